"""Callout's exceptions and the outcome classes a call can end in.

Every error Callout raises is a ``CalloutError``. Each carries the outcome class the failed call
ends in (SPEC §3), a stable machine-readable ``code``, and a message that says what failed and how
to fix it. A message never contains a secret.

    CalloutError
    ├── InvalidError          outcome "invalid": a pre-flight failure, nothing was sent
    │   └── TemplateError     a template failed to parse or render (missing path, CR/LF in a header)
    ├── EgressDenied          outcome "blocked": the egress guard refused the destination
    ├── NetworkError          outcome "network": DNS, refused, reset, TLS, malformed or oversized
    ├── DeadlineExceeded      outcome "timeout": the call's one deadline passed
    └── FlowError             a flow is malformed or a run cannot go on (not an apiCall outcome)
        └── FlowValidationError   a flow was rejected when it was loaded
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CalloutError",
    "DeadlineExceeded",
    "EgressDenied",
    "FlowError",
    "FlowValidationError",
    "InvalidError",
    "NetworkError",
    "Outcome",
    "TemplateError",
]


class Outcome(StrEnum):
    """The outcome class of one apiCall (SPEC §3); cases route on it as ``outcome``."""

    S2XX = "2xx"
    S3XX = "3xx"
    S4XX = "4xx"
    S5XX = "5xx"
    TIMEOUT = "timeout"
    NETWORK = "network"
    BLOCKED = "blocked"
    INVALID = "invalid"

    @classmethod
    def from_status(cls, status: int) -> Outcome:
        """The class of a final HTTP status; 1xx never reaches here (aiohttp consumes it)."""
        if 200 <= status < 300:
            return cls.S2XX
        if 300 <= status < 400:
            return cls.S3XX
        if 400 <= status < 500:
            return cls.S4XX
        return cls.S5XX


class CalloutError(Exception):
    """Base of every Callout error: an outcome class, a stable code and a fixable message."""

    outcome: Outcome = Outcome.INVALID
    code: str = "error"
    #: How many attempts the call made before failing (set by the transport; 0 when none).
    attempts: int = 0

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: Where the problem is, as a dotted path into the config or document (when known).
        self.field = field

    def as_dict(self) -> dict[str, str]:
        """The ``{"outcome", "code", "message"}`` shape that ``vars.httpError`` carries."""
        return {"outcome": str(self.outcome), "code": self.code, "message": self.message}


class InvalidError(CalloutError):
    """A pre-flight failure: the request was not sent (status 0)."""

    outcome = Outcome.INVALID
    code = "invalid"


class TemplateError(InvalidError):
    """A template could not be parsed or rendered.

    ``template`` is the template's source text (never a rendered value, which might hold a secret);
    ``path`` is the scope path that failed, when one did.
    """

    code = "template_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        template: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.template = template
        self.path = path


class EgressDenied(CalloutError):
    """The egress guard refused a destination: which rule, and which host or address."""

    outcome = Outcome.BLOCKED
    code = "egress_denied"

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        host: str | None = None,
        address: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        #: The name of the rule that refused, e.g. ``"private"``, ``"scheme"``, ``"port"``.
        self.rule = rule
        self.host = host
        self.address = address


class NetworkError(CalloutError):
    """The exchange failed on the wire: DNS, refused, reset, TLS, malformed or oversized."""

    outcome = Outcome.NETWORK
    code = "network_error"


class DeadlineExceeded(CalloutError):
    """The call's one deadline passed (connect, redirects, retries and body included)."""

    outcome = Outcome.TIMEOUT
    code = "timeout"


class FlowError(CalloutError):
    """A run could not go on: step limit, run deadline, or an error inside a node."""

    code = "flow_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        node_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.node_id = node_id


class FlowValidationError(FlowError):
    """A flow was rejected when it was loaded: the message names the node and the fix."""

    code = "flow_invalid"
