"""``apiCall`` in mode ``http``: an ad-hoc request configured on the node (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from callout.cases import Case
from callout.engine.auth import NO_AUTH, render_auth
from callout.engine.call import CallResult, CallTrace, assemble_request, perform
from callout.engine.context import BoundedNode, RunContext, Step
from callout.engine.node_config import ConfigReader
from callout.engine.nodes import first_case, node_cases
from callout.errors import CalloutError, Outcome
from callout.integration import CompiledAuth
from callout.scrub import NULL_SCRUBBER, scrubber_for
from callout.spec.flow import NEXT, NodeSpec
from callout.template import (
    JsonTemplate,
    TextTemplate,
    UrlTemplate,
    compile_header,
    compile_json,
    compile_url,
)
from callout.transport import OutboundRequest, RetryPolicy

__all__ = ["HTTP_FIELDS", "HttpCall", "compile_http_call"]

HTTP_FIELDS = frozenset(
    {
        "mode",
        "method",
        "url",
        "headers",
        "body",
        "auth",
        "responseVar",
        "timeoutMs",
        "cases",
        "retry",
    }
)
_HTTP_MODE = MappingProxyType({"mode": "http"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class HttpCall(BoundedNode):
    """A compiled ad-hoc request node (bounded by min(timeoutMs, the run's remaining time))."""

    spec: NodeSpec
    method: str
    url: UrlTemplate
    headers: tuple[tuple[str, TextTemplate], ...]
    body: JsonTemplate | None
    auth: CompiledAuth | None
    response_var: str
    timeout_ms: int
    retry: RetryPolicy | None
    cases: tuple[Case, ...]
    #: Whether the node sets its own Content-Type (known when compiled, not looked up per call).
    sets_content_type: bool = False

    async def run(self, ctx: RunContext) -> Step:
        scope = ctx.scope()
        scrubber = NULL_SCRUBBER
        request: OutboundRequest | None = None
        body: Any = None
        try:
            headers = {name: template.render(scope) for name, template in self.headers}
            applied = NO_AUTH
            if self.auth is not None:
                applied = render_auth(self.auth, scope)
                scrubber = scrubber_for(tuple(s for s in applied.secrets if s))
                ctx.note_secrets(scrubber)
            request, body = assemble_request(
                self.method,
                self.url.render(scope),
                headers,
                applied,
                self.body,
                scope,
                sets_content_type=self.sets_content_type,
            )
        except CalloutError as exc:
            result = CallResult(Outcome.INVALID, 0, None, None, exc, 0, 0.0)
        else:
            result = await perform(ctx, request, timeout_ms=self.timeout_ms, retry=self.retry)
        ctx.set_vars(
            {
                self.response_var: result.body,
                "httpStatus": result.status,
                "httpOk": result.outcome is Outcome.S2XX,
                "httpError": (
                    None if result.error is None else result.error_var(scrubber, self.spec.id)
                ),
            }
        )
        # ``scope`` is this run's own dict, done with: it takes the call's two names in place.
        scope["status"], scope["outcome"] = result.status, str(result.outcome)
        target, index = first_case(self.cases, scope)
        trace = CallTrace(request, result, scrubber, body, _HTTP_MODE)
        # Every field, by tuple.__new__: Step's own __new__ is interpreted Python (~0.4 us).
        return tuple.__new__(Step, (NEXT, target, index, trace))


def compile_http_call(node: NodeSpec, reader: ConfigReader) -> HttpCall:
    """Validate and compile an ad-hoc request node's config."""
    reader.refuse_unknown(HTTP_FIELDS)
    method = reader.choice("method", METHODS, default="GET", upper=True)
    url = compile_url(reader.string("url", required=True), field=reader.field("url"))
    headers = tuple(
        (name, compile_header(value, field=reader.field(f"headers.{name}")))
        for name, value in reader.string_map("headers").items()
    )
    body = None
    if reader.has("body"):
        body = compile_json(reader.raw("body"), field=reader.field("body"))
    return HttpCall(
        spec=node,
        method=method,
        url=url,
        headers=headers,
        body=body,
        auth=_compile_auth(reader),
        response_var=reader.var_name("responseVar", default="httpResult"),
        timeout_ms=reader.timeout_ms(),
        retry=reader.retry(),
        cases=node_cases(node),
        sets_content_type=any(name.lower() == "content-type" for name, _ in headers),
    )


def _compile_auth(reader: ConfigReader) -> CompiledAuth | None:
    auth = reader.sub("auth")
    if auth is None:
        return None
    kind = auth.choice("type", ("none", "basic", "bearer", "header"), required=True)
    if kind == "none":
        return None
    if kind == "basic":
        auth.refuse_unknown({"type", "username", "password"})
        names: tuple[str, ...] = ("username", "password")
    elif kind == "bearer":
        auth.refuse_unknown({"type", "token"})
        names = ("token",)
    else:
        auth.refuse_unknown({"type", "name", "value"})
        names = ("value",)
    templates = {
        n: compile_header(auth.string(n, required=True), field=auth.field(n)) for n in names
    }
    header_name = auth.header_name("name") if kind == "header" else None
    return CompiledAuth(kind, templates, header_name)
