"""``apiCall`` in mode ``integration``: a pinned operation of a saved integration (SPEC §3).

The node pins ``(integrationSlug, integrationVersion, operationKey, connectionId)``. Its inputs
render from the flow scope and are validated against the operation's ``inputSchema`` before
anything is sent; the operation's templates then render against the flow scope plus ``input``,
``conn`` and ``secret``. Every pre-flight failure is outcome ``invalid`` with status 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from callout.cases import Case
from callout.engine.auth import AppliedAuth, render_auth
from callout.engine.call import CallResult, CallTrace, assemble_request, perform
from callout.engine.context import BoundedNode, RunContext, Step
from callout.engine.node_config import ConfigReader
from callout.engine.nodes import first_case, node_cases
from callout.engine.sources import ResolvedConnection, ResolvedSpec, connection_error
from callout.errors import CalloutError, InvalidError, Outcome
from callout.integration import CompiledAuth, CompiledOperation, CompiledSpec
from callout.mapping import Mappings, compile_mappings
from callout.scrub import NULL_SCRUBBER, Scrubber, scrubber_for
from callout.spec.flow import NEXT, NodeSpec
from callout.template import JsonTemplate, UrlTemplate, compile_value
from callout.transport import OutboundRequest, RetryPolicy

__all__ = ["INTEGRATION_FIELDS", "IntegrationCall", "compile_integration_call"]

INTEGRATION_FIELDS = frozenset(
    {
        "mode",
        "integrationSlug",
        "integrationVersion",
        "operationKey",
        "connectionId",
        "inputs",
        "outputMappings",
        "timeoutMs",
        "retry",
        "cases",
    }
)


@dataclass(frozen=True, slots=True)
class IntegrationCall(BoundedNode):
    """A compiled integration-mode node (bounded by min(timeoutMs, the run's remaining time))."""

    spec: NodeSpec
    slug: str
    version: int
    operation_key: str
    connection_id: str
    inputs: JsonTemplate
    output_mappings: Mappings
    timeout_ms: int | None
    retry: RetryPolicy | None
    cases: tuple[Case, ...]
    #: What the node pins, as its history detail shows it (built once, read by every trace).
    pins: Mapping[str, Any]

    #: What this node's calls share per org while its spec version and connection stay the
    #: same objects in the source's caches (a new revision is a new object: rebuilt then).
    _bound: dict[str | None, _Bound] = field(default_factory=dict, repr=False, compare=False)

    async def run(self, ctx: RunContext) -> Step:
        scope = ctx.scope()
        scrubber = NULL_SCRUBBER
        request: OutboundRequest | None = None
        body: Any = None
        bound: _Bound | None = None
        try:
            source = ctx.services.integrations
            if source is None:
                raise _no_source()
            # Resolved on every call (cheap while cached): how a published change, a retired
            # version or a deleted connection reaches a running node.
            resolved = await source.spec(ctx.org_id, self.slug, self.version)
            kept = self._bound.get(ctx.org_id)
            if kept is None or kept.resolved is not resolved:
                self._operation(resolved)  # an unknown operation is named before the connection
            connection = await source.connection(ctx.org_id, self.connection_id)
            if kept is None or kept.resolved is not resolved or kept.connection is not connection:
                kept = self._bind(ctx.org_id, resolved, connection)
            bound = kept  # only now: a failure before this maps the node's own outputs only
            scrubber = connection.scrubber
            operation = bound.operation
            inputs = self.inputs.render(scope)
            operation.validate_input(inputs)
            spec_scope = {
                **scope,
                "input": inputs,
                "conn": connection.config,
                "secret": connection.secrets,
            }
            fixed = bound.fixed or bound.fix_auth()
            if fixed.applied is not None:
                applied, scrubber = fixed.applied, fixed.scrubber
            else:
                applied, scrubber = await _auth_per_call(ctx, bound, fixed.auth, spec_scope)
            headers = (
                {name: template.render(spec_scope) for name, template in operation.headers}
                if operation.headers
                else {}
            )
            request, body = assemble_request(
                operation.method,
                bound.url.render(spec_scope),
                headers,
                applied,
                operation.body,
                spec_scope,
                sets_content_type=fixed.sets_content_type,
                secrets=scrubber.secrets,
                allowed_origins=bound.allowed,
            )
            ctx.note_secrets(scrubber)
        except CalloutError as exc:
            result = CallResult(exc.outcome, 0, None, None, exc, exc.attempts, 0.0)
        else:
            timeout = bound.timeout_ms or ctx.services.config.transport.default_timeout_ms
            result = await perform(ctx, request, timeout_ms=timeout, retry=bound.retry)
        changes = {
            "integrationStatus": result.status,
            "integrationOk": result.outcome is Outcome.S2XX,
            "integrationError": (
                None if result.error is None else result.error_var(scrubber, self.spec.id)
            ),
        }
        mapping_error = self._map_outputs(changes, bound, result)
        ctx.set_vars(changes)
        # The cases read the flow's scopes (never input, conn or secret) and the call's result.
        # ``scope`` is this run's own dict, done with: it takes the two names in place.
        scope["status"], scope["outcome"] = result.status, str(result.outcome)
        target, index = first_case(self.cases, scope)
        extra: Mapping[str, Any] = self.pins  # read, never written, by the trace
        warning = bound.warning if bound is not None else None
        if warning is not None or mapping_error is not None:
            extra = dict(extra)
            if warning is not None:
                extra["warnings"] = [warning]
            if mapping_error is not None:
                extra["mappingError"] = scrubber.error_message(mapping_error)
        trace = CallTrace(request, result, scrubber, body, extra)
        # Every field, by tuple.__new__: Step's own __new__ is interpreted Python (~0.4 us).
        return tuple.__new__(Step, (NEXT, target, index, trace))

    def _bind(
        self, org_id: str | None, resolved: ResolvedSpec, connection: ResolvedConnection
    ) -> _Bound:
        """Check the pins against what they resolved to, and keep what the calls share."""
        operation = self._operation(resolved)
        if connection.integration_slug != self.slug:
            raise connection_error(
                "connection_wrong_integration",
                self.connection_id,
                f"integration '{connection.integration_slug}', not '{self.slug}'",
            )
        warning = None
        if resolved.status == "deprecated":
            warning = (
                f"integration '{self.slug}' version {self.version} is deprecated; "
                "pin a newer version"
            )
        bound = _Bound(
            resolved,
            connection,
            operation,
            warning,
            connection.allowed_origins(resolved.compiled),
            self.timeout_ms or operation.timeout_ms,
            self.retry or operation.retry,
            # The operation's defaults, then the node's: a name in both takes the node's.
            Mappings(operation.default_output_mappings.pairs + self.output_mappings.pairs),
            operation.url.bind({"conn": connection.config}),
        )
        if len(self._bound) >= _BOUND_KEPT:
            self._bound.clear()
        self._bound[org_id] = bound
        return bound

    def _operation(self, resolved: ResolvedSpec) -> CompiledOperation:
        operation = resolved.compiled.operations.get(self.operation_key)
        if operation is None:
            known = ", ".join(sorted(resolved.compiled.operations))
            raise InvalidError(
                f"integration '{self.slug}' version {self.version} has no operation "
                f"'{self.operation_key}' (it has: {known})",
                code="unknown_operation",
                field="operationKey",
            )
        return operation

    def _map_outputs(
        self, names: dict[str, Any], bound: _Bound | None, result: CallResult
    ) -> str | None:
        """Add the mapped outputs to ``names``: the operation's defaults, the node's (which
        win), then the transform. Every mapped var is set, to null when there was no response."""
        data = result.body if result.response is not None else None
        if bound is None:  # the pins did not resolve: only the node's own names are known
            self.output_mappings.apply_into(names, data)
            return None
        bound.outputs.apply_into(names, data)
        transform = bound.operation.transform
        if transform is not None and data is not None:
            try:
                names.update(transform.apply(data))
            except CalloutError as exc:
                return exc.message
        return None


def _no_source() -> InvalidError:
    return InvalidError(
        "this engine has no saved integrations; run it with a store (callout run "
        "--org) or give the Engine an IntegrationSource",
        code="no_integrations",
    )


#: How many orgs' bindings one node keeps (a flow belongs to one org; a shared one to a few).
_BOUND_KEPT = 64


@dataclass(slots=True)
class _Bound:
    """A node's pins resolved for one org: the spec version and connection they resolved to
    (kept to tell when either changed), the operation, and what every call derives from them."""

    resolved: ResolvedSpec
    connection: ResolvedConnection
    operation: CompiledOperation
    warning: str | None
    allowed: frozenset[str]
    timeout_ms: int | None
    retry: RetryPolicy | None
    outputs: Mappings
    #: The operation's URL with the connection's config rendered in (its structure checked
    #: once here, not on every call).
    url: UrlTemplate
    #: The auth, as ``_fixed_auth`` derives it; None until the first call that renders it.
    fixed: _FixedAuth | None = None

    def fix_auth(self) -> _FixedAuth:
        """The operation's auth over this connection (kept with the connection, which other
        nodes share). Rendering raises as it would per call (a missing secret): nothing is
        kept then."""
        compiled = self.resolved.compiled
        key = (compiled.content_hash, self.operation.key)
        fixed = self.connection.derived.get(key)
        if fixed is None:
            fixed = self.connection.derived[key] = _fixed_auth(
                self.operation, compiled, self.connection
            )
        self.fixed = fixed
        return fixed


async def _auth_per_call(
    ctx: RunContext, bound: _Bound, auth: CompiledAuth, spec_scope: dict[str, Any]
) -> tuple[AppliedAuth, Scrubber]:
    """Auth that reads the flow's scope or the inputs, or an OAuth token: rendered per call."""
    connection = bound.connection
    token = None
    if auth.kind == "oauth2ClientCredentials":
        send = ctx.services.transport.send
        token = await ctx.services.oauth.token(
            (connection.id, connection.revision), auth, spec_scope, bound.allowed, send
        )
    applied = render_auth(auth, spec_scope, token)
    return applied, _with_auth_secrets(connection.scrubber, applied)


@dataclass(frozen=True, slots=True)
class _FixedAuth:
    """What one operation's calls over one connection revision share: its auth, rendered once
    when it reads only the connection (``conn``, ``secret``), with the scrubber for it."""

    auth: CompiledAuth
    #: The rendered auth, or None when it must be rendered per call (OAuth, or templates that
    #: read the flow's scope or the inputs).
    applied: AppliedAuth | None
    scrubber: Scrubber
    sets_content_type: bool


_CONNECTION_SCOPES = ("conn.", "secret.")


def _fixed_auth(
    operation: CompiledOperation, compiled: CompiledSpec, connection: ResolvedConnection
) -> _FixedAuth:
    auth = operation.auth or compiled.connection_auth
    sets_content_type = any(name.lower() == "content-type" for name, _ in operation.headers)
    reads_connection_only = all(
        path.startswith(_CONNECTION_SCOPES)
        for template in auth.templates.values()
        for path in template.paths
    )
    if auth.kind == "oauth2ClientCredentials" or not reads_connection_only:
        return _FixedAuth(auth, None, connection.scrubber, sets_content_type)
    # Rendering raises here as it would per call (a missing secret): nothing is kept then.
    applied = render_auth(auth, {"conn": connection.config, "secret": connection.secrets})
    scrubber = _with_auth_secrets(connection.scrubber, applied)
    return _FixedAuth(auth, applied, scrubber, sets_content_type)


def _with_auth_secrets(scrubber: Scrubber, applied: AppliedAuth) -> Scrubber:
    """The connection's scrubber, plus values the auth derived from its secrets (a Basic pair,
    an OAuth token)."""
    extra_secrets = [s for s in applied.secrets if s not in scrubber.secrets]
    if extra_secrets:
        return scrubber_for((*scrubber.secrets, *extra_secrets))
    return scrubber


def compile_integration_call(node: NodeSpec, reader: ConfigReader) -> IntegrationCall:
    """Validate and compile an integration-mode node's config (the pins resolve at run time)."""
    reader.refuse_unknown(INTEGRATION_FIELDS)
    version = reader.raw("integrationVersion")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise reader.fail("integrationVersion", "must be a published version number (1, 2, ...)")
    inputs = reader.raw("inputs", {})
    if not isinstance(inputs, Mapping):
        raise reader.fail("inputs", "must be an object of input name to template")
    mappings = reader.raw("outputMappings", {})
    if not isinstance(mappings, Mapping) or not all(isinstance(v, str) for v in mappings.values()):
        raise reader.fail("outputMappings", "must be an object of var name to JMESPath expression")
    timeout = reader.timeout_ms() if reader.has("timeoutMs") else None
    slug = reader.string("integrationSlug", required=True)
    operation_key = reader.string("operationKey", required=True)
    connection_id = reader.string("connectionId", required=True)
    pins = {
        "mode": "integration",
        "integrationSlug": slug,
        "integrationVersion": version,
        "operationKey": operation_key,
        "connectionId": connection_id,
    }
    return IntegrationCall(
        spec=node,
        slug=slug,
        version=version,
        operation_key=operation_key,
        connection_id=connection_id,
        pins=MappingProxyType(pins),
        inputs=compile_value(dict(inputs), field=reader.field("inputs")),
        output_mappings=compile_mappings(mappings, field=reader.field("outputMappings")),
        timeout_ms=timeout,
        retry=reader.retry(),
        cases=node_cases(node),
    )
