"""The one call path both apiCall modes (and the legacy types) share.

A mode renders its templates into an ``OutboundRequest``; ``perform`` sends it within the run's
deadline, turns every failure into an outcome, and describes the exchange for run history with
every secret in play scrubbed out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from callout._jsontext import dumps_compact, dumps_unicode
from callout.engine.auth import AppliedAuth, add_query_param
from callout.engine.context import RunContext
from callout.errors import CalloutError, DeadlineExceeded, Outcome
from callout.scrub import NULL_SCRUBBER, Scrubber, scrubber_for
from callout.template import JsonTemplate
from callout.transport import InboundResponse, OutboundRequest, RetryPolicy

__all__ = [
    "PREVIEW_BYTES",
    "CallResult",
    "CallTrace",
    "assemble_request",
    "perform",
    "plain_dict",
    "request_detail",
]

_log = logging.getLogger("callout.engine")

#: How much of a request or response body run history keeps, after scrubbing.
PREVIEW_BYTES = 4096


class CallResult(NamedTuple):
    """How one call ended: a response, or an error with its outcome class.

    A named tuple, not a frozen dataclass: as immutable, and built on every call at a fifth of
    the cost (a frozen dataclass sets each field through ``object.__setattr__``).
    """

    outcome: Outcome
    status: int
    body: Any
    response: InboundResponse | None
    error: CalloutError | None
    attempts: int
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.S2XX

    def error_var(self, scrubber: Scrubber, node_id: str = "") -> dict[str, str] | None:
        """The ``httpError``/``integrationError`` value: null, or outcome, code and a scrubbed
        message (also logged, scrubbed, at INFO: a failed call is what operators look for)."""
        if self.error is None:
            return None
        error = {
            "outcome": str(self.outcome),
            "code": self.error.code,
            "message": scrubber.error_message(self.error.message),
        }
        if _log.isEnabledFor(logging.INFO):
            _log.info(
                "call failed",
                extra={
                    "nodeId": node_id,
                    "outcome": error["outcome"],
                    "code": error["code"],
                    "reason": error["message"],
                    "attempts": self.attempts,
                },
            )
        return error


_NO_SECRET_HEADERS: frozenset[str] = frozenset()


def assemble_request(
    method: str,
    url: str,
    headers: dict[str, str],
    auth: AppliedAuth,
    body_template: JsonTemplate | None,
    scope: Mapping[str, Any],
    *,
    sets_content_type: bool,
    secrets: tuple[str, ...] = (),
    allowed_origins: frozenset[str] | None = None,
) -> tuple[OutboundRequest, Any]:
    """The outbound request both modes send: the auth header (marked as secret-bearing) or query
    parameter, and the JSON body with its content type. Returns it with the rendered body."""
    secret_headers = _NO_SECRET_HEADERS
    if auth.header is not None:
        name, value = auth.header
        headers[name] = value
        secret_headers = auth.header_names
    if auth.query is not None:
        url = add_query_param(url, *auth.query)
    body = payload = None
    if body_template is not None:
        body = body_template.render(scope)
        payload = dumps_compact(body).encode()  # built as data, never by concatenation
        if not sets_content_type:
            headers["Content-Type"] = "application/json"
    # Built by tuple.__new__: a named tuple's own __new__ is interpreted Python, ~0.4 us a call
    # even in the compiled build (bench/RESULTS.md, fifteenth pass); every field is given.
    request = tuple.__new__(
        OutboundRequest,
        (method, url, headers, payload, secret_headers, secrets, allowed_origins),
    )
    return request, body


#: Each outcome by its value: a dict lookup, where ``Outcome(value)`` is the enum's own (~0.5 us).
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
#: ``Outcome.from_status`` for each hundred, looked up on every call instead of called.
_OUTCOME_BY_HUNDREDS = {h: Outcome.from_status(h * 100) for h in range(1, 10)}


async def perform(
    ctx: RunContext,
    request: OutboundRequest,
    *,
    timeout_ms: int,
    retry: RetryPolicy | None,
) -> CallResult:
    """Send ``request`` within both the node's timeout and the run's deadline."""
    budget = min(float(timeout_ms), ctx.remaining_ms())
    if budget < 1:
        error: CalloutError = DeadlineExceeded(
            "the run's deadline passed before the call could start", code="run_deadline"
        )
        return CallResult(Outcome.TIMEOUT, 0, None, None, error, 0, 0.0)
    started = time.perf_counter()
    try:
        response = await ctx.services.transport.send(request, timeout_ms=int(budget), retry=retry)
    except CalloutError as exc:
        attempts = exc.attempts
        elapsed = (time.perf_counter() - started) * 1000.0
        return CallResult(exc.outcome, 0, None, None, exc, attempts, elapsed)
    status = response.status
    outcome = _OUTCOME_BY_HUNDREDS.get(status // 100) or Outcome.from_status(status)
    # tuple.__new__, as for the request in ``assemble_request``: every field, in order.
    return tuple.__new__(
        CallResult,
        (outcome, status, response.body, response, None, response.attempts, response.duration_ms),
    )


def preview(value: Any, scrubber: Scrubber, limit: int = PREVIEW_BYTES) -> str | None:
    """A scrubbed, truncated text preview of a body (scrub first, so no secret is cut in half
    and left partly visible)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else dumps_unicode(value)
    text = scrubber.text(text)
    if len(text) > limit:
        return text[:limit] + f"... [{len(text) - limit} more characters]"
    return text


def request_detail(
    request: OutboundRequest | None,
    result: CallResult | None,
    scrubber: Scrubber,
    *,
    body: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The history detail of one call: request, response, attempts, outcome, error code."""
    detail: dict[str, Any] = dict(extra or {})
    if request is not None:
        detail["request"] = {
            "method": request.method,
            "url": scrubber.url(request.url),
            "headers": scrubber.headers(request.headers),
            "bodyPreview": preview(body, scrubber),
        }
    if result is not None:
        response = result.response
        detail["response"] = (
            {
                "status": response.status,
                "size": response.size,
                "durationMs": round(response.duration_ms, 3),
                "redirects": response.redirects,
                "preview": preview(response.body, scrubber),
            }
            if response is not None
            else None
        )
        detail["attempts"] = result.attempts
        detail["outcome"] = str(result.outcome)
        detail["errorCode"] = result.error.code if result.error is not None else None
        detail["status"] = result.status
    return detail


class CallTrace:
    """What run history needs to know about one call, scrubbed only when it is read.

    Scrubbing and previews cost more than the rest of the engine together, so they happen when
    history is written (off the call path), not while the caller waits. The raw request stays
    private to this object; every way out (``as_dict``, ``repr``) is scrubbed.
    """

    __slots__ = ("_body", "_extra", "_request", "_result", "_scrubber")

    def __init__(
        self,
        request: OutboundRequest | None,
        result: CallResult,
        scrubber: Scrubber,
        body: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._request = request
        self._result = result
        self._scrubber = scrubber
        self._body = body
        self._extra = extra

    @property
    def scrubber(self) -> Scrubber:
        """This call's own scrubber: its secrets, used when the run has none to give."""
        return self._scrubber

    def scrub(self, value: Any, scrubber: Scrubber | None = None) -> Any:
        """``value`` (e.g. the vars this node changed) with this call's secrets removed (or
        those of ``scrubber``, which must hold them: the run's holds every call's)."""
        return (scrubber or self._scrubber).data(value)

    def as_dict(self, scrubber: Scrubber | None = None) -> dict[str, Any]:
        """The history detail: request, response, attempts, outcome and error code, scrubbed."""
        return request_detail(
            self._request,
            self._result,
            scrubber or self._scrubber,
            body=self._body,
            extra=self._extra,
        )

    def wire(self) -> tuple[Any, ...]:
        """What ``as_dict`` reads, as plain data (a tuple of str, numbers, None, dicts and the
        bodies), for the history writer process; ``from_wire`` makes an equivalent trace back.

        It holds the raw request, secrets included: it goes only to that process, over a pipe.
        """
        request, result = self._request, self._result
        response, error = result.response, result.error
        return (
            None if request is None else (request.method, request.url, plain_dict(request.headers)),
            result.outcome.value,
            result.status,
            result.attempts,
            result.duration_ms,
            None if error is None else error.code,
            None
            if response is None
            else (
                response.status,
                response.size,
                response.duration_ms,
                response.redirects,
                response.body,
            ),
            self._scrubber.secrets,
            self._body,
            None if self._extra is None else plain_dict(self._extra),
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> CallTrace:
        """The trace ``wire()`` describes (its ``as_dict`` gives what the original's gave)."""
        sent, outcome, status, attempts, duration_ms, code, shipped, secrets, body, extra = wire
        # Named tuples by tuple.__new__, every field given (see assemble_request).
        request = (
            None
            if sent is None
            else tuple.__new__(
                OutboundRequest, (sent[0], sent[1], sent[2], None, frozenset(), (), None)
            )
        )
        response = (
            None
            if shipped is None
            else tuple.__new__(
                InboundResponse,
                (shipped[0], {}, shipped[4], shipped[1], "", attempts, shipped[3], shipped[2]),
            )
        )
        error = None if code is None else CalloutError("", code=code)
        result = tuple.__new__(
            CallResult,
            (_OUTCOMES[outcome], status, None, response, error, attempts, duration_ms),
        )
        scrubber = scrubber_for(tuple(secrets)) if secrets else NULL_SCRUBBER
        return cls(request, result, scrubber, body, extra)

    def __repr__(self) -> str:
        return f"CallTrace(outcome={self._result.outcome!s}, status={self._result.status})"


def plain_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as a dict ``marshal`` can write: itself if it is one, else a shallow copy."""
    if type(value) is dict:
        return value
    if type(value) is MappingProxyType:  # a node's constant detail: its dict's own copy, in C
        return value.copy()
    return dict(value)
