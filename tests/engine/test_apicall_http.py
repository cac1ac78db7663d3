"""apiCall in mode http, end to end against real aiohttp upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
import time
from typing import Any

import pytest
from aiohttp import web

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.errors import FlowValidationError
from callout.guard import EgressPolicy, StaticResolver
from callout.testing import Upstream, serve_app, serve_raw


def node(url: str, **config: Any) -> dict[str, Any]:
    return {"id": "call", "type": "apiCall", "config": {"mode": "http", "url": url, **config}}


def echo_app() -> web.Application:
    """An upstream that answers with what it received."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "query": [[k, v] for k, v in request.query.items()],
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"code": code}, status=code)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/text", text)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_2xx_sets_vars_from_parsed_json(engine: Engine) -> None:
    """A 2xx response lands parsed in vars[responseVar], with httpStatus, httpOk and no error."""
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(node(up.url("/v1/x"), responseVar="crm"))
    assert result.vars["crm"]["method"] == "GET"
    assert result.vars["httpStatus"] == 200
    assert result.vars["httpOk"] is True
    assert result.vars["httpError"] is None
    assert result.event.details()["outcome"] == "2xx"


async def test_text_response_is_kept_as_text(engine: Engine) -> None:
    """A body that is not JSON is kept as text in the response variable."""
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(node(up.url("/text")))
    assert result.vars["httpResult"] == "plain words"


async def test_templated_url_body_and_headers_reach_the_upstream(engine: Engine) -> None:
    """URL components are encoded, JSON values keep their types, headers are rendered."""
    async with serve_app(echo_app()) as up:
        config = node(
            up.url("/v1/calls/{{vars.id}}?from={{event.from}}"),
            method="POST",
            headers={"X-Trace": "{{vars.trace}}"},
            body={
                "caller": "{{event.from}}",
                "attempt": "{{vars.attempt}}",
                "note": "try {{vars.attempt}}",
            },
        )
        result = await engine.run_node(
            config,
            event={"from": "+1 555&x=1/#"},
            vars={"id": "a/b?c", "trace": "t-1", "attempt": 2},
        )
    seen = result.vars["httpResult"]
    assert seen["path"] == "/v1/calls/a%2Fb%3Fc?from=%2B1%20555%26x%3D1%2F%23"
    assert seen["query"] == [["from", "+1 555&x=1/#"]]
    assert seen["headers"]["X-Trace"] == "t-1"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["body"] == {"caller": "+1 555&x=1/#", "attempt": 2, "note": "try 2"}


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        ({"type": "bearer", "token": "tok-{{vars.t}}"}, ("Authorization", "Bearer tok-9")),
        (
            {"type": "basic", "username": "ann", "password": "pw-{{vars.t}}"},
            ("Authorization", "Basic " + base64.b64encode(b"ann:pw-9").decode()),
        ),
        (
            {"type": "header", "name": "X-Api-Key", "value": "key-{{vars.t}}"},
            ("X-Api-Key", "key-9"),
        ),
    ],
)
async def test_ad_hoc_auth_is_sent_and_scrubbed_from_history(
    engine: Engine, auth: dict[str, str], header: tuple[str, str]
) -> None:
    """Each auth kind reaches the upstream, and the value never appears in the node's event."""
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(node(up.url("/a"), auth=auth), vars={"t": "9"})
    name, value = header
    assert result.vars["httpResult"]["headers"][name] == value
    detail = json.dumps(result.event.as_dict())
    assert value not in detail
    assert value.split(" ")[-1] not in detail


@pytest.mark.parametrize(
    ("code", "outcome"), [(200, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx")]
)
async def test_status_classes_route_by_cases(engine: Engine, code: int, outcome: str) -> None:
    """Cases on outcome pick the route; httpOk is true exactly for 2xx."""
    cases = [
        {"path": "outcome", "op": "eq", "value": c, "nodeId": f"on{c}"}
        for c in ("2xx", "3xx", "4xx", "5xx")
    ]
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(node(up.url(f"/status/{code}"), cases=cases))
    assert result.route == f"on{outcome}"
    assert result.vars["httpStatus"] == code
    assert result.vars["httpOk"] is (outcome == "2xx")


async def test_case_on_status_and_vars(engine: Engine) -> None:
    """Cases read the numeric status and the response vars; the first match wins."""
    cases = [
        {"path": "status", "op": "gte", "value": 500, "nodeId": "broken"},
        {"path": "httpResult.code", "op": "eq", "value": 404, "nodeId": "missing"},
        {"path": "status", "op": "eq", "value": 404, "nodeId": "never"},
    ]
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(node(up.url("/status/404"), cases=cases))
    assert result.route == "missing"
    assert result.case_index == 1


async def test_timeout_when_the_server_never_answers(engine: Engine) -> None:
    """A server that never answers ends as outcome timeout within the deadline plus a margin."""
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/", hang)
    async with serve_app(app) as up:
        started = time.monotonic()
        result = await engine.run_node(node(up.url("/"), timeoutMs=300))
        elapsed = time.monotonic() - started
    assert result.vars["httpError"]["outcome"] == "timeout"
    assert result.vars["httpStatus"] == 0
    assert elapsed < 0.3 + 0.5


async def test_timeout_when_the_body_trickles(engine: Engine) -> None:
    """A body sent a byte at a time cannot stretch the call past its one deadline."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)  # the slow upstream being simulated, not synchronisation

    async with serve_raw(trickle) as up:
        started = time.monotonic()
        result = await engine.run_node(node(up.url("/"), timeoutMs=400))
        elapsed = time.monotonic() - started
    assert result.vars["httpError"]["outcome"] == "timeout"
    assert elapsed < 0.4 + 0.5


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


async def malformed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    await writer.drain()


def big_app() -> web.Application:
    async def oversized(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(40):  # 2.5 MiB, chunked, no Content-Length
            await response.write(chunk)
        return response

    async def bomb(request: web.Request) -> web.Response:
        payload = gzip.compress(b"\0" * (50 << 20))
        return web.Response(body=payload, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/big", oversized)
    app.router.add_get("/bomb", bomb)
    return app


async def test_network_refused(engine: Engine) -> None:
    """A port nothing listens on is outcome network, code connection_refused."""
    result = await engine.run_node(node(f"http://127.0.0.1:{closed_port()}/"))
    assert result.vars["httpError"]["outcome"] == "network"
    assert result.vars["httpError"]["code"] == "connection_refused"


@pytest.mark.parametrize(
    ("handler", "code"), [(reset_mid_body, "connection_reset"), (malformed, "malformed_response")]
)
async def test_network_broken_exchanges(engine: Engine, handler: Any, code: str) -> None:
    """A reset mid-body and a malformed response are outcome network with their codes."""
    async with serve_raw(handler) as up:
        result = await engine.run_node(node(up.url("/")))
    assert result.vars["httpError"]["outcome"] == "network"
    assert result.vars["httpError"]["code"] == code
    assert result.vars["httpStatus"] == 0


@pytest.mark.parametrize("path", ["/big", "/bomb"])
async def test_network_oversized_and_gzip_bomb(engine: Engine, path: str) -> None:
    """A body past the size cap, streamed or decompressed, is network/response_too_large."""
    async with serve_app(big_app()) as up:
        result = await engine.run_node(node(up.url(path)))
    assert result.vars["httpError"] == {
        "outcome": "network",
        "code": "response_too_large",
        "message": result.vars["httpError"]["message"],
    }


async def test_network_dns_failure() -> None:
    """A name that does not resolve is outcome network (dns_failure) and nothing is sent."""
    async with Engine(resolver=StaticResolver({})) as eng:
        result = await eng.run_node(node("http://nowhere.test/"))
    assert result.vars["httpError"]["outcome"] == "network"
    assert result.vars["httpError"]["code"] == "dns_failure"


async def test_blocked_loopback_without_allow_list() -> None:
    """Without the allow-list, 127.0.0.1 is blocked with status 0, and the reason says why."""
    async with serve_app(echo_app()) as up, Engine() as eng:
        result = await eng.run_node(node(up.url("/")))
    error = result.vars["httpError"]
    assert error["outcome"] == "blocked"
    assert "127.0.0.1" in error["message"]
    assert result.vars["httpStatus"] == 0


async def test_blocked_redirect_to_private_address() -> None:
    """A redirect hop to a private address is refused even though the first hop was allowed."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.1.2.3/internal")

    app = web.Application()
    app.router.add_get("/", redirect)
    policy = EgressPolicy(allow_hosts=frozenset({"upstream.test"}))
    async with serve_app(app) as up:
        resolver = StaticResolver({"upstream.test": ["127.0.0.1"]})
        async with Engine(EngineConfig(egress=policy), resolver=resolver) as eng:
            result = await eng.run_node(node(f"http://upstream.test:{up.port}/"))
    assert result.vars["httpError"]["outcome"] == "blocked"
    assert "10.1.2.3" in result.vars["httpError"]["message"]


async def test_blocked_dns_answer_mixing_public_and_private() -> None:
    """One private address among the answers blocks the name: every answer must be allowed."""
    resolver = StaticResolver({"mixed.test": ["93.184.216.34", "127.0.0.1"]})
    async with Engine(resolver=resolver) as eng:
        result = await eng.run_node(node("http://mixed.test/"))
    assert result.vars["httpError"]["outcome"] == "blocked"


async def test_invalid_missing_template_path(engine: Engine) -> None:
    """A missing path is a pre-flight error: nothing sent, outcome invalid, the path named."""
    hits: list[str] = []

    async def count(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response()

    app = web.Application()
    app.router.add_get("/{tail:.*}", count)
    async with serve_app(app) as up:
        result = await engine.run_node(node(up.url("/c/{{vars.customer.id}}")))
    error = result.vars["httpError"]
    assert error["outcome"] == "invalid"
    assert "vars.customer.id" in error["message"]
    assert result.vars["httpStatus"] == 0
    assert hits == []


async def test_invalid_crlf_in_header(engine: Engine) -> None:
    """A header value rendering CR or LF is refused before sending (no header injection)."""
    async with serve_app(echo_app()) as up:
        result = await engine.run_node(
            node(up.url("/"), headers={"X-Note": "{{vars.note}}"}),
            vars={"note": "ok\r\nX-Injected: 1"},
        )
    assert result.vars["httpError"]["outcome"] == "invalid"


async def test_invalid_outcome_routes_by_case(engine: Engine) -> None:
    """Pre-flight failures route like any outcome."""
    cases = [{"path": "outcome", "op": "eq", "value": "invalid", "nodeId": "fix"}]
    result = await engine.run_node(node("http://127.0.0.1:1/{{vars.nope}}", cases=cases))
    assert result.route == "fix"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"mode": "http"}, "config.url"),
        ({"mode": "http", "url": "http://x.test/", "method": "FETCH"}, "config.method"),
        ({"mode": "http", "url": "http://x.test/", "timeoutMs": 60000}, "config.timeoutMs"),
        ({"mode": "http", "url": "http://x.test/", "timeOutMs": 100}, "config.timeOutMs"),
        ({"mode": "http", "url": "http://x.test/", "auth": {"type": "digest"}}, "config.auth.type"),
        ({"mode": "http", "url": "http://x.test/", "responseVar": "1x"}, "config.responseVar"),
        ({"mode": "http", "url": "http://x.test/{{secret.key}}"}, "config.url"),
        ({"mode": "smtp"}, "config.mode"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(config: dict[str, Any], field: str) -> None:
    """A wrong node config is refused when the flow is loaded, naming the node and the field."""
    flow = {
        "id": "f",
        "nodes": [
            {"id": "start", "type": "onFlowStart", "on": {"__next": "call"}},
            {"id": "call", "type": "apiCall", "config": config},
        ],
    }
    with pytest.raises(FlowValidationError) as info:
        Engine().load_flow(flow)
    assert info.value.field is not None
    assert info.value.field.endswith(field)
    assert info.value.node_id == "call"


async def test_upstream_origin_helper_is_loopback(engine: Engine) -> None:
    """Tests reach 127.0.0.1 only through the allow-list (sanity of the fixture itself)."""
    up = Upstream("127.0.0.1", 1)
    assert up.url("/x") == "http://127.0.0.1:1/x"
