"""Tests for the transport: real upstreams on 127.0.0.1, the one deadline, caps, guard, retries."""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import socket
import ssl
import struct
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import cache
from typing import Any

import aiohttp
import pytest
from aiohttp import client_exceptions, http_exceptions, web
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from callout.errors import (
    CalloutError,
    DeadlineExceeded,
    EgressDenied,
    InvalidError,
    NetworkError,
    Outcome,
)
from callout.guard import EgressPolicy, StaticResolver
from callout.testing import Upstream, serve_app, serve_raw
from callout.transport import (
    InboundResponse,
    OutboundRequest,
    RetryPolicy,
    Transport,
    TransportConfig,
    map_aiohttp_error,
    retry_after_seconds,
)

LOOPBACK = EgressPolicy.from_entries(["127.0.0.0/8"])
COUNTS = web.AppKey("counts", Counter[str])
SECRET = "s3cr3t-t0ken-value"
MakeTransport = Callable[..., Transport]


def get(url: str, **kwargs: Any) -> OutboundRequest:
    return OutboundRequest("GET", url, **kwargs)


def attempts_of(exc: BaseException) -> int:
    value = exc.attempts  # type: ignore[attr-defined]
    assert isinstance(value, int)
    return value


# --- upstreams ---------------------------------------------------------------------------------


@cache
def gzip_bomb() -> bytes:
    """32 MiB of zeros as ~32 KiB of gzip."""
    return gzip.compress(b"\0" * (32 << 20), 9)


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def json_body(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "n": 1})


async def text_body(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def raw_body(request: web.Request) -> web.Response:
    ctype = request.query.get("type", "text/plain")
    return web.Response(body=request.query["body"].encode(), headers={"Content-Type": ctype})


async def latin1(request: web.Request) -> web.Response:
    return web.Response(
        body="café".encode("latin-1"), headers={"Content-Type": "text/plain; charset=latin-1"}
    )


async def deep(request: web.Request) -> web.Response:
    n = int(request.query["n"])
    return web.Response(body=b"[" * n + b"]" * n, content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response(
        {
            "method": request.method,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode(),
            "peer": peer[1] if peer else None,
        }
    )


async def redirect_chain(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n == 0:
        return web.json_response({"done": True})
    return web.Response(status=302, headers={"Location": f"/redirect/{n - 1}"})


async def redirect_to(request: web.Request) -> web.Response:
    code = int(request.query.get("status", "302"))
    return web.Response(status=code, headers={"Location": request.query["url"]})


async def flaky(request: web.Request) -> web.Response:
    counts = request.app[COUNTS]
    key = request.match_info["key"]
    counts[key] += 1
    if counts[key] <= int(request.query.get("fail", "1")):
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.query.get("status", "503")), headers=headers)
    return web.json_response({"count": counts[key]})


async def big_chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    chunk = b"x" * 65536
    try:
        for _ in range(int(request.query["size"]) // len(chunk)):
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped reading at its cap
    return resp


async def big_fixed(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (2 << 20))


async def gzipped(request: web.Request) -> web.Response:
    if request.query.get("bomb"):
        body = gzip_bomb()
    else:
        body = gzip.compress(json.dumps({"items": list(range(1000))}).encode())
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def set_cookie(request: web.Request) -> web.Response:
    resp = web.json_response({})
    resp.set_cookie("session", "abc")
    return resp


def upstream_app() -> web.Application:
    app = web.Application()
    app[COUNTS] = Counter()
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/json", json_body)
    app.router.add_get("/text", text_body)
    app.router.add_get("/raw", raw_body)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/deep", deep)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect/{n}", redirect_chain)
    app.router.add_route("*", "/to", redirect_to)
    app.router.add_route("*", "/flaky/{key}", flaky)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_route("*", "/big-fixed", big_fixed)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/set-cookie", set_cookie)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with serve_app(upstream_app()) as server:
        yield server


@pytest.fixture
async def other() -> AsyncIterator[Upstream]:
    """A second upstream: same host, another port, so another origin."""
    async with serve_app(upstream_app()) as server:
        yield server


@pytest.fixture
async def make_transport() -> AsyncIterator[MakeTransport]:
    made: list[Transport] = []

    def make(
        config: TransportConfig | None = None,
        policy: EgressPolicy = LOOPBACK,
        resolver: Any = None,
    ) -> Transport:
        transport = Transport(config or TransportConfig(), policy, resolver=resolver)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()


@pytest.fixture
def transport(make_transport: MakeTransport) -> Transport:
    return make_transport()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def raw(head: bytes, *, then: str = "wait") -> Callable[[], AbstractAsyncContextManager[Upstream]]:
    """A raw upstream writing ``head`` then waiting for the client to go ("wait") or trickling."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        await writer.drain()
        if then == "trickle":
            while not reader.at_eof():
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)  # the upstream's pace, not a test synchronisation
        await reader.read()  # until the client closes

    return lambda: serve_raw(handler)


# --- statuses and bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 204, 302, 404, 500, 503])
async def test_any_status_is_a_returned_response(
    transport: Transport, upstream: Upstream, code: int
) -> None:
    """2xx, 3xx (without Location), 4xx and 5xx come back as responses, not errors."""
    response = await transport.send(get(upstream.url(f"/status/{code}")))
    assert isinstance(response, InboundResponse)
    assert response.status == code
    assert (response.attempts, response.redirects) == (1, 0)
    assert response.url == upstream.url(f"/status/{code}")
    assert response.duration_ms > 0


async def test_json_is_parsed(transport: Transport, upstream: Upstream) -> None:
    """A JSON response body comes back parsed, with its decoded size."""
    response = await transport.send(get(upstream.url("/json")))
    assert response.body == {"ok": True, "n": 1}
    assert response.size == len(b'{"ok": true, "n": 1}')
    assert response.headers["Content-Type"].startswith("application/json")


async def test_text_stays_text(transport: Transport, upstream: Upstream) -> None:
    """A body that is not JSON comes back as text."""
    response = await transport.send(get(upstream.url("/text")))
    assert response.body == "hello"


@pytest.mark.parametrize(
    ("body", "ctype", "expected"),
    [
        ('{"a": [1, 2]}', "text/plain", {"a": [1, 2]}),
        ("{not json", "application/json", "{not json"),
        ("42", "application/problem+json", 42),
    ],
)
async def test_json_by_content_type_or_because_it_parses(
    transport: Transport, upstream: Upstream, body: str, ctype: str, expected: Any
) -> None:
    """Text that parses as JSON is JSON whatever its type; JSON-typed non-JSON stays text."""
    url = str(URL(upstream.url("/raw")).with_query(body=body, type=ctype))
    response = await transport.send(get(url))
    assert response.body == expected


async def test_empty_body_is_none(transport: Transport, upstream: Upstream) -> None:
    """An empty body is None, with size 0."""
    response = await transport.send(get(upstream.url("/status/204")))
    assert (response.body, response.size) == (None, 0)


async def test_charset_is_honoured(transport: Transport, upstream: Upstream) -> None:
    """Text is decoded with the declared charset."""
    response = await transport.send(get(upstream.url("/latin1")))
    assert response.body == "café"


async def test_gzip_body_is_decoded(transport: Transport, upstream: Upstream) -> None:
    """A gzip-encoded body is decompressed; size counts decoded bytes."""
    response = await transport.send(get(upstream.url("/gzip")))
    assert response.body == {"items": list(range(1000))}
    assert response.size == len(json.dumps({"items": list(range(1000))}))


@pytest.mark.parametrize("depth", [65, 5000])
async def test_json_deeper_than_the_cap_is_refused(
    transport: Transport, upstream: Upstream, depth: int
) -> None:
    """JSON nested past 64 levels fails as network/json_too_deep (including recursion-deep)."""
    with pytest.raises(NetworkError) as info:
        await transport.send(get(upstream.url(f"/deep?n={depth}")))
    assert (info.value.outcome, info.value.code) == (Outcome.NETWORK, "json_too_deep")
    assert attempts_of(info.value) == 1


async def test_json_at_the_cap_is_accepted(transport: Transport, upstream: Upstream) -> None:
    """JSON nested exactly 64 levels is parsed."""
    response = await transport.send(get(upstream.url("/deep?n=64")))
    assert isinstance(response.body, list)


# --- the one deadline --------------------------------------------------------------------------


async def test_a_server_that_never_answers_ends_at_the_deadline(transport: Transport) -> None:
    """No response at all: DeadlineExceeded(timeout) shortly after timeoutMs."""
    async with raw(b"")() as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            await transport.send(get(server.url()), timeout_ms=300)
        assert time.monotonic() - started < 0.3 + 0.5
    assert (info.value.outcome, info.value.code) == (Outcome.TIMEOUT, "timeout")
    assert attempts_of(info.value) == 1
    assert "300 ms" in info.value.message


async def test_a_trickling_body_ends_at_the_deadline(transport: Transport) -> None:
    """A body sent byte by byte cannot hold the call past timeoutMs."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    async with raw(head, then="trickle")() as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await transport.send(get(server.url()), timeout_ms=400)
        assert time.monotonic() - started < 0.4 + 0.5


@given(remaining=st.floats(min_value=1e-6, max_value=30.0))
def test_a_hop_timer_never_outlasts_the_deadline(remaining: float) -> None:
    """The timer a hop gets (shared between calls with the same budget) ends at most a
    millisecond before the deadline, and never after it; connecting gets no longer either."""
    transport = Transport(TransportConfig(), EgressPolicy.from_entries([]))
    timer = transport._timeout(remaining)
    assert timer.total is not None
    assert timer.sock_connect is not None
    assert remaining - 0.0011 < timer.total <= remaining
    assert timer.sock_connect <= timer.total
    assert transport._timeout(remaining) == timer


@pytest.mark.parametrize("value", [0, -1, 30001, 1.5, "100", True])
async def test_timeout_ms_is_validated(transport: Transport, value: Any) -> None:
    """timeoutMs outside 1..max is invalid, naming the field, and nothing is sent."""
    with pytest.raises(InvalidError) as info:
        await transport.send(get("http://127.0.0.1:9/"), timeout_ms=value)
    assert (info.value.code, info.value.field) == ("invalid_timeout", "timeoutMs")
    assert attempts_of(info.value) == 0


# --- network failures --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused(transport: Transport) -> None:
    """A port nothing listens on fails as network/connection_refused."""
    with pytest.raises(NetworkError) as info:
        await transport.send(get(f"http://127.0.0.1:{free_port()}/"))
    assert (info.value.outcome, info.value.code) == (Outcome.NETWORK, "connection_refused")
    assert attempts_of(info.value) == 1


async def test_reset_mid_body(transport: Transport) -> None:
    """A connection reset after part of the body fails as connection_reset."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with serve_raw(handler) as server:
        with pytest.raises(NetworkError) as info:
            await transport.send(get(server.url()))
    assert info.value.code == "connection_reset"


async def test_dns_failure(make_transport: MakeTransport) -> None:
    """A name that does not resolve fails as network/dns_failure."""
    transport = make_transport(resolver=StaticResolver({}))
    with pytest.raises(NetworkError) as info:
        await transport.send(get("http://nowhere.test:8080/"))
    assert info.value.code == "dns_failure"
    assert attempts_of(info.value) == 1


async def test_concurrent_calls_get_their_own_errors(make_transport: MakeTransport) -> None:
    """Calls failing on one shared DNS lookup each get their own error and attempt count."""
    transport = make_transport(resolver=StaticResolver({}))
    request = get("http://nowhere.test:8080/")
    first, second = await asyncio.gather(
        transport.send(request),
        transport.send(request, retry=RetryPolicy(attempts=2, base_delay_ms=0)),
        return_exceptions=True,
    )
    assert isinstance(first, NetworkError)
    assert isinstance(second, NetworkError)
    assert first is not second
    assert (attempts_of(first), attempts_of(second)) == (1, 2)


async def test_error_messages_name_the_origin_not_the_url(transport: Transport) -> None:
    """A network error names scheme://host:port, never the path or query that may hold secrets."""
    port = free_port()
    with pytest.raises(NetworkError) as info:
        await transport.send(get(f"http://127.0.0.1:{port}/v1/x?api_key={SECRET}"))
    assert f"http://127.0.0.1:{port}" in info.value.message
    assert SECRET not in info.value.message
    assert "/v1/x" not in info.value.message


async def test_malformed_response(transport: Transport) -> None:
    """Garbage instead of HTTP fails as network/malformed_response."""
    async with raw(b"garbage\r\n\r\n")() as server:
        with pytest.raises(NetworkError) as info:
            await transport.send(get(server.url()))
    assert info.value.code == "malformed_response"


async def test_streamed_body_over_the_cap_is_refused(
    make_transport: MakeTransport, upstream: Upstream
) -> None:
    """A chunked body without Content-Length stops at the cap: response_too_large."""
    transport = make_transport(TransportConfig(max_response_bytes=100_000))
    with pytest.raises(NetworkError) as info:
        await transport.send(get(upstream.url("/big-chunked?size=1048576")))
    assert (info.value.outcome, info.value.code) == (Outcome.NETWORK, "response_too_large")


async def test_content_length_over_the_cap_is_refused_before_reading(
    transport: Transport,
) -> None:
    """A declared Content-Length past the cap fails at once, without waiting for the body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n"
    async with raw(head)() as server:
        started = time.monotonic()
        with pytest.raises(NetworkError) as info:
            await transport.send(get(server.url()), timeout_ms=5000)
        assert time.monotonic() - started < 1.0
    assert info.value.code == "response_too_large"


async def test_head_with_a_large_content_length_is_not_refused(
    transport: Transport, upstream: Upstream
) -> None:
    """HEAD has no body, whatever Content-Length says."""
    response = await transport.send(OutboundRequest("HEAD", upstream.url("/big-fixed")))
    assert (response.status, response.body) == (200, None)


async def test_gzip_bomb_is_refused_within_the_cap(
    transport: Transport, upstream: Upstream
) -> None:
    """32 MiB of zeros as 32 KiB of gzip fails at the 1 MiB cap, holding only a few MiB."""
    gzip_bomb()  # built before measuring
    tracemalloc.start()
    try:
        with pytest.raises(NetworkError) as info:
            await transport.send(get(upstream.url("/gzip?bomb=1")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "response_too_large"
    assert peak < 8 << 20


# --- the egress guard --------------------------------------------------------------------------


async def test_loopback_is_blocked_without_the_allow_list(
    make_transport: MakeTransport, upstream: Upstream
) -> None:
    """Without an allow-list, 127.0.0.1 is blocked before anything is sent."""
    transport = make_transport(policy=EgressPolicy())
    with pytest.raises(EgressDenied) as info:
        await transport.send(get(upstream.url("/json")))
    assert info.value.outcome == Outcome.BLOCKED
    assert info.value.address == "127.0.0.1"
    assert attempts_of(info.value) == 0


async def test_a_redirect_to_a_private_address_is_blocked(
    make_transport: MakeTransport, upstream: Upstream
) -> None:
    """An allowed name may redirect only to allowed places: its own address by IP is not one."""
    transport = make_transport(
        policy=EgressPolicy.from_entries(["upstream.test"]),
        resolver=StaticResolver({"upstream.test": ["127.0.0.1"]}),
    )
    first = f"http://upstream.test:{upstream.port}"
    assert (await transport.send(get(f"{first}/json"))).status == 200
    hop = str(URL(f"{first}/to").with_query(url=upstream.url("/json")))
    with pytest.raises(EgressDenied) as info:
        await transport.send(get(hop))
    assert (info.value.rule, info.value.address) == ("loopback", "127.0.0.1")
    assert attempts_of(info.value) == 1


async def test_a_redirect_to_another_name_is_judged_by_the_resolver(
    make_transport: MakeTransport, upstream: Upstream
) -> None:
    """A hop to a name the allow-list does not cover is refused when it resolves to loopback."""
    transport = make_transport(
        policy=EgressPolicy.from_entries(["upstream.test"]),
        resolver=StaticResolver({"upstream.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]}),
    )
    target = f"http://evil.test:{upstream.port}/json"
    url = str(URL(f"http://upstream.test:{upstream.port}/to").with_query(url=target))
    with pytest.raises(EgressDenied) as info:
        await transport.send(get(url))
    assert (info.value.host, info.value.address) == ("evil.test", "127.0.0.1")
    assert attempts_of(info.value) == 1


async def test_a_dns_answer_mixing_public_and_private_is_blocked(
    make_transport: MakeTransport,
) -> None:
    """Every answer must be allowed: one private address among public ones blocks the call."""
    transport = make_transport(
        policy=EgressPolicy(),
        resolver=StaticResolver({"mixed.test": ["93.184.216.34", "127.0.0.1"]}),
    )
    with pytest.raises(EgressDenied) as info:
        await transport.send(get("http://mixed.test:8080/"))
    assert info.value.address == "127.0.0.1"


async def test_proxy_environment_is_ignored(
    transport: Transport, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and friends are not used: the call goes straight to the upstream."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    assert (await transport.send(get(upstream.url("/json")))).status == 200


# --- redirects ---------------------------------------------------------------------------------


async def test_three_redirects_are_followed(transport: Transport, upstream: Upstream) -> None:
    """Up to three hops are followed; the final URL and hop count are reported."""
    response = await transport.send(get(upstream.url("/redirect/3")))
    assert (response.status, response.body, response.redirects) == (200, {"done": True}, 3)
    assert response.url == upstream.url("/redirect/0")


async def test_a_fourth_redirect_is_returned_as_3xx(
    transport: Transport, upstream: Upstream
) -> None:
    """After three hops the next redirect is the final response (outcome 3xx)."""
    response = await transport.send(get(upstream.url("/redirect/4")))
    assert (response.status, response.redirects) == (302, 3)
    assert response.url == upstream.url("/redirect/1")
    assert Outcome.from_status(response.status) == Outcome.S3XX


@pytest.mark.parametrize(
    ("location", "rule"),
    [("http://127.0.0.1:22/", "port"), ("file:///etc/passwd", "scheme")],
)
async def test_every_hop_is_guarded(
    transport: Transport, upstream: Upstream, location: str, rule: str
) -> None:
    """A redirect target passes the egress guard like the first URL."""
    url = str(URL(upstream.url("/to")).with_query(url=location))
    with pytest.raises(EgressDenied) as info:
        await transport.send(get(url))
    assert info.value.rule == rule


CREDENTIALS = {
    "Authorization": f"Bearer {SECRET}",
    "Cookie": "session=1",
    "X-Api-Key": "k",
    "X-Trace": "t-1",
}


async def test_credentials_are_dropped_when_the_origin_changes(
    transport: Transport, upstream: Upstream, other: Upstream
) -> None:
    """Authorization, Cookie and secret headers do not follow a redirect to another origin."""
    url = str(URL(upstream.url("/to")).with_query(url=other.url("/echo")))
    request = get(url, headers=CREDENTIALS, secret_headers=frozenset({"x-api-key"}))
    response = await transport.send(request)
    seen = response.body["headers"]
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert "x-api-key" not in seen
    assert seen["x-trace"] == "t-1"
    assert response.redirects == 1


async def test_credentials_are_kept_on_the_same_origin(
    transport: Transport, upstream: Upstream
) -> None:
    """A same-origin redirect keeps Authorization and the other headers."""
    url = str(URL(upstream.url("/to")).with_query(url="/echo"))
    request = get(url, headers=CREDENTIALS, secret_headers=frozenset({"x-api-key"}))
    seen = (await transport.send(request)).body["headers"]
    assert seen["authorization"] == f"Bearer {SECRET}"
    assert seen["x-api-key"] == "k"


@pytest.mark.parametrize(
    ("code", "method", "body"),
    [
        (303, "GET", ""),
        (302, "GET", ""),
        (301, "GET", ""),
        (307, "POST", "x=1"),
        (308, "POST", "x=1"),
    ],
)
async def test_redirect_methods(
    transport: Transport, upstream: Upstream, code: int, method: str, body: str
) -> None:
    """303 (and 301/302 after POST) become GET without body; 307/308 keep method and body."""
    url = str(URL(upstream.url("/to")).with_query(url="/echo", status=str(code)))
    request = OutboundRequest(
        "POST", url, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"x=1"
    )
    seen = (await transport.send(request)).body
    assert (seen["method"], seen["body"]) == (method, body)
    assert ("content-type" in seen["headers"]) == (method == "POST")


# --- secrets stay on their origins -------------------------------------------------------------


def with_secret(url: str, allowed: Upstream, **kwargs: Any) -> OutboundRequest:
    kwargs.setdefault("method", "GET")
    return OutboundRequest(
        url=url, secrets=(SECRET,), allowed_origins=frozenset({allowed.origin}), **kwargs
    )


async def test_secrets_are_not_sent_to_an_origin_outside_the_allowed(
    transport: Transport, upstream: Upstream, other: Upstream
) -> None:
    """The first hop to a foreign origin with Authorization is blocked, naming the origin only."""
    request = with_secret(other.url("/echo"), upstream, headers={"Authorization": "Bearer x"})
    with pytest.raises(EgressDenied) as info:
        await transport.send(request)
    assert (info.value.rule, info.value.code) == ("secret_origin", "secret_origin_denied")
    assert other.origin in info.value.message
    assert attempts_of(info.value) == 0


async def test_a_redirect_resending_a_secret_body_is_blocked(
    transport: Transport, upstream: Upstream, other: Upstream
) -> None:
    """A 307 to a foreign origin would resend a body holding the secret: blocked."""
    url = str(URL(upstream.url("/to")).with_query(url=other.url("/echo"), status="307"))
    body = json.dumps({"token": SECRET}).encode()
    with pytest.raises(EgressDenied) as info:
        await transport.send(with_secret(url, upstream, method="POST", body=body))
    assert info.value.rule == "secret_origin"
    assert SECRET not in info.value.message
    assert attempts_of(info.value) == 1


async def test_a_redirect_carrying_a_secret_in_its_url_is_blocked(
    transport: Transport, upstream: Upstream, other: Upstream
) -> None:
    """A Location to a foreign origin with the secret in its query is blocked."""
    target = str(URL(other.url("/echo")).with_query(key=SECRET))
    url = str(URL(upstream.url("/to")).with_query(url=target))
    with pytest.raises(EgressDenied) as info:
        await transport.send(with_secret(url, upstream))
    assert info.value.rule == "secret_origin"


async def test_a_redirect_that_dropped_its_credentials_may_leave(
    transport: Transport, upstream: Upstream, other: Upstream
) -> None:
    """Once Authorization is dropped at the origin change, nothing secret is left: allowed."""
    url = str(URL(upstream.url("/to")).with_query(url=other.url("/echo")))
    request = with_secret(url, upstream, headers={"Authorization": f"Bearer {SECRET}"})
    response = await transport.send(request)
    assert response.status == 200
    assert "authorization" not in response.body["headers"]


# --- retries -----------------------------------------------------------------------------------

FAST = RetryPolicy(attempts=3, base_delay_ms=10, max_delay_ms=20)


async def test_503_then_200_is_retried(transport: Transport, upstream: Upstream) -> None:
    """A 503 is retried for GET; the response reports two attempts."""
    response = await transport.send(get(upstream.url("/flaky/a")), retry=FAST)
    assert (response.status, response.body, response.attempts) == (200, {"count": 2}, 2)


async def test_without_a_retry_policy_nothing_is_retried(
    transport: Transport, upstream: Upstream
) -> None:
    """Retries are opt-in: the 503 is the answer."""
    response = await transport.send(get(upstream.url("/flaky/b")))
    assert (response.status, response.attempts) == (503, 1)


async def test_post_is_retried_only_with_an_idempotency_key(
    transport: Transport, upstream: Upstream
) -> None:
    """POST without Idempotency-Key is not retried; with one it is."""
    plain = OutboundRequest("POST", upstream.url("/flaky/c"), body=b"{}")
    response = await transport.send(plain, retry=FAST)
    assert (response.status, response.attempts) == (503, 1)
    keyed = OutboundRequest(
        "POST", upstream.url("/flaky/d"), body=b"{}", headers={"Idempotency-Key": "k-1"}
    )
    response = await transport.send(keyed, retry=FAST)
    assert (response.status, response.attempts) == (200, 2)


async def test_attempts_are_capped(transport: Transport, upstream: Upstream) -> None:
    """A status that keeps failing ends after the policy's attempts with the last response."""
    response = await transport.send(get(upstream.url("/flaky/e?fail=9&status=429")), retry=FAST)
    assert (response.status, response.attempts) == (429, 3)


async def test_retry_after_is_honoured(transport: Transport, upstream: Upstream) -> None:
    """Retry-After: 1 makes the retry wait at least a second."""
    started = time.monotonic()
    response = await transport.send(
        get(upstream.url("/flaky/f?retry_after=1")), retry=FAST, timeout_ms=3000
    )
    assert time.monotonic() - started >= 0.95
    assert (response.status, response.attempts) == (200, 2)


async def test_retry_after_past_the_deadline_returns_what_we_have(
    transport: Transport, upstream: Upstream
) -> None:
    """A wait that would pass the deadline is not taken: the 503 is returned at once."""
    started = time.monotonic()
    response = await transport.send(
        get(upstream.url("/flaky/g?retry_after=10")), retry=FAST, timeout_ms=1000
    )
    assert time.monotonic() - started < 0.5
    assert (response.status, response.attempts) == (503, 1)


async def test_network_errors_are_retried(transport: Transport) -> None:
    """A refused connection is retried; the error reports every attempt."""
    with pytest.raises(NetworkError) as info:
        await transport.send(get(f"http://127.0.0.1:{free_port()}/"), retry=FAST)
    assert info.value.code == "connection_refused"
    assert attempts_of(info.value) == 3


async def test_oversized_responses_are_not_retried(
    make_transport: MakeTransport, upstream: Upstream
) -> None:
    """A body past the cap would be past it again: no retry."""
    transport = make_transport(TransportConfig(max_response_bytes=1000))
    with pytest.raises(NetworkError) as info:
        await transport.send(get(upstream.url("/big-fixed")), retry=FAST)
    assert attempts_of(info.value) == 1


def test_retry_after_values() -> None:
    """Retry-After is delta-seconds or an HTTP date; anything else is ignored."""
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert (retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT") or 0) > 50
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# --- the pool and the session ------------------------------------------------------------------


async def test_connections_are_reused(transport: Transport, upstream: Upstream) -> None:
    """Two calls in a row share one keep-alive connection."""
    first = await transport.send(get(upstream.url("/echo")))
    second = await transport.send(get(upstream.url("/echo")))
    assert first.body["peer"] == second.body["peer"]


ServeRaw = Callable[[], AbstractAsyncContextManager[Upstream]]


def closes_after_one_answer() -> tuple[ServeRaw, list[int]]:
    """A raw upstream that answers the first request on each connection with a keep-alive
    response, then reads the next request and closes without answering it: the race where a
    pooled connection is closed by the upstream just as it is reused. Also returns the list of
    requests each connection received."""
    received: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(0)
        index = len(received) - 1
        await read_request_and_body(reader)
        received[index] += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
        await writer.drain()
        await read_request_and_body(reader)
        received[index] += 1
        # closed here, unanswered (serve_raw closes the writer)

    return (lambda: serve_raw(handler)), received


async def read_request_and_body(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            await reader.readexactly(int(value))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_call_on_a_stale_pooled_connection_is_sent_again(
    transport: Transport, method: str
) -> None:
    """The upstream closes a keep-alive connection as the next call reuses it: an idempotent
    call is sent once more on a new connection, and the caller sees only the answer."""
    serve, received = closes_after_one_answer()
    async with serve() as upstream:
        first = await transport.send(OutboundRequest(method, upstream.url("/a")))
        second = await transport.send(OutboundRequest(method, upstream.url("/b")))
    assert (first.status, second.status) == (200, 200)
    assert second.attempts == 1  # not one of the call's retries: the same attempt, resent
    assert received == [2, 1]  # the stale connection got the request; a new one answered it


async def test_a_post_on_a_stale_pooled_connection_is_not_sent_twice(
    transport: Transport,
) -> None:
    """A POST may already have had its effect when the connection closed: it fails instead
    of being sent again."""
    serve, received = closes_after_one_answer()
    async with serve() as upstream:
        await transport.send(OutboundRequest("POST", upstream.url("/a"), body=b"{}"))
        with pytest.raises(NetworkError) as info:
            await transport.send(OutboundRequest("POST", upstream.url("/b"), body=b"{}"))
    assert info.value.code == "malformed_response"  # closed without a complete response
    assert received == [2]


async def test_cookies_do_not_leak_between_calls(transport: Transport, upstream: Upstream) -> None:
    """A Set-Cookie from one call is not sent on the next."""
    await transport.send(get(upstream.url("/set-cookie")))
    seen = (await transport.send(get(upstream.url("/echo")))).body["headers"]
    assert "cookie" not in seen


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: TransportConfig(max_response_bytes=(10 << 20) + 1), "max_response_bytes"),
        (lambda: TransportConfig(max_timeout_ms=30001), "max_timeout_ms"),
        (
            lambda: TransportConfig(default_timeout_ms=9000, max_timeout_ms=5000),
            "default_timeout_ms",
        ),
        (lambda: TransportConfig(max_json_depth=0), "max_json_depth"),
        (lambda: RetryPolicy(attempts=4), "attempts"),
        (lambda: RetryPolicy(attempts=0), "attempts"),
        (lambda: RetryPolicy(base_delay_ms=-1), "base_delay_ms"),
    ],
)
def test_config_is_validated(make: Callable[[], object], field: str) -> None:
    """Out-of-range limits raise ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        make()


# --- the exception seam ------------------------------------------------------------------------

#: Every exception class aiohttp exports, and the code it must map to.
EXPECTED_CODES = {
    "ClientError": "network_error",
    "ClientConnectionError": "network_error",
    "ClientConnectionResetError": "connection_reset",
    "ClientOSError": "connection_reset",  # built with ECONNRESET below
    "ClientConnectorError": "connection_refused",  # built with ECONNREFUSED below
    "ClientConnectorDNSError": "dns_failure",
    "ClientProxyConnectionError": "proxy_error",
    "ClientHttpProxyError": "proxy_error",
    "ClientSSLError": "tls_error",
    "ClientConnectorSSLError": "tls_error",
    "ClientConnectorCertificateError": "tls_error",
    "ServerFingerprintMismatch": "tls_error",
    "ConnectionTimeoutError": "connect_timeout",
    "ServerTimeoutError": "timeout",
    "SocketTimeoutError": "timeout",
    "ServerConnectionError": "network_error",
    "ServerDisconnectedError": "malformed_response",
    "ClientResponseError": "malformed_response",
    "ContentTypeError": "malformed_response",
    "WSServerHandshakeError": "malformed_response",
    "TooManyRedirects": "too_many_redirects",
    "ClientPayloadError": "connection_reset",
    "UploadAbortedError": "connection_reset",
    "InvalidURL": "invalid_url",
    "InvalidUrlClientError": "invalid_url",
    "NonHttpUrlClientError": "invalid_url",
    "RedirectClientError": "malformed_response",
    "InvalidUrlRedirectClientError": "malformed_response",
    "NonHttpUrlRedirectClientError": "malformed_response",
    "WSMessageTypeError": "malformed_response",
    "WebSocketError": "malformed_response",
    "EofStream": "network_error",
}


def exported_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in (client_exceptions, aiohttp):
        for name in module.__all__:
            obj = getattr(module, name, None)
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)
            ):
                found[name] = obj
    return found


def instance_of(cls: type[BaseException]) -> BaseException:
    """An instance of any aiohttp exception class (their constructors differ)."""
    key = ConnectionKey("example.com", 443, True, True, None, None, None)
    secret_url = URL(f"https://example.com/path?token={SECRET}")
    info = RequestInfo(secret_url, "GET", CIMultiDictProxy(CIMultiDict()), secret_url)
    if issubclass(cls, client_exceptions.ClientConnectorCertificateError):
        return cls(key, ssl.CertificateError("bad certificate"))
    if issubclass(cls, client_exceptions.ClientConnectorError):
        return cls(key, ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    if issubclass(cls, client_exceptions.ClientResponseError):
        return cls(info, ())
    if issubclass(cls, client_exceptions.ServerFingerprintMismatch):
        return cls(b"a", b"b", "example.com", 443)
    if issubclass(cls, aiohttp.WebSocketError):
        return cls(1002, "bad frame")
    if issubclass(cls, client_exceptions.InvalidURL):
        return cls(secret_url)
    if issubclass(cls, client_exceptions.ClientOSError):
        return cls(errno.ECONNRESET, "Connection reset by peer")
    return cls(f"failed at {secret_url}")


def test_every_aiohttp_exception_is_mapped() -> None:
    """Each exception class aiohttp exports maps to a CalloutError with its own code."""
    exported = exported_exceptions()
    assert set(exported) == set(EXPECTED_CODES), "a new aiohttp exception needs a mapping"
    for name, cls in exported.items():
        mapped = map_aiohttp_error(instance_of(cls), origin="https://example.com:443")
        assert isinstance(mapped, CalloutError), name
        assert mapped.code == EXPECTED_CODES[name], name
        assert SECRET not in mapped.message, name


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
        (BrokenPipeError(errno.EPIPE, "pipe"), "connection_reset"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
        (OSError(errno.EHOSTUNREACH, "unreachable"), "network_error"),
        (TimeoutError(), "timeout"),
        (ssl.SSLError(1, "handshake"), "tls_error"),
        (http_exceptions.BadStatusLine("HTTP/9"), "malformed_response"),
        (http_exceptions.ContentLengthError("short"), "connection_reset"),
        (ValueError("Newline in header value"), "invalid_request"),
    ],
)
def test_what_aiohttp_lets_through_is_mapped(exc: BaseException, code: str) -> None:
    """OS, TLS and parser errors that reach us unwrapped get codes too."""
    assert map_aiohttp_error(exc).code == code


def test_a_payload_error_is_classified_by_its_cause() -> None:
    """An undecodable Content-Encoding is malformed; a cut body is a reset."""
    bad = client_exceptions.ClientPayloadError("bad gzip")
    bad.__cause__ = http_exceptions.ContentEncodingError("gzip")
    cut = client_exceptions.ClientPayloadError("not completed")
    cut.__cause__ = http_exceptions.ContentLengthError("short")
    assert map_aiohttp_error(bad).code == "malformed_response"
    assert map_aiohttp_error(cut).code == "connection_reset"
