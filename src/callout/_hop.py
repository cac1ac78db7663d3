"""One HTTP exchange on aiohttp's connection pool, without ``ClientSession.request``'s extras.

``ClientSession.request`` is general: per call it merges cookie jars, looks for proxies and
``.netrc`` credentials, runs trace hooks and middlewares, follows redirects and checks
``raise_for_status``. Callout uses none of that (no cookies, no proxies, no ``.netrc``; it follows
redirects itself, hop by hop through the egress guard), and that bookkeeping was ~48k of the
~430k instructions a call spends in the client (``bench/RESULTS.md``, fourteenth pass). So the
transport sends each hop here, on the same public building blocks ``ClientSession.request``
uses (``ClientRequest``, the session's connector, ``ClientResponse``), keeping what it does
that a call relies on:

- the hop's timer covers connecting, sending, the response head and, until the connection is
  released, the body (``TimeoutHandle``, cancelled when the connection goes back to the pool);
- a connect phase that times out raises ``ConnectionTimeoutError``;
- an idempotent request that finds its pooled keep-alive connection closed by the upstream is
  sent once more on a new connection (RFC 9112 §9.3.1), as aiohttp does;
- a bare ``OSError`` becomes ``ClientOSError``, so ``_http_errors`` sees what it would see from
  ``ClientSession.request``.

Nothing here decides policy: the egress guard, origins and secrets are ``transport.py``'s.
It leans on those building blocks' signatures, which aiohttp may change in a minor release:
``pyproject.toml`` pins the minor version it was written and tested against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from aiohttp import client_exceptions as ce
from aiohttp.client_reqrep import ClientRequest
from aiohttp.helpers import DEFAULT_CHUNK_SIZE, BaseTimerContext, TimeoutHandle
from multidict import CIMultiDict
from yarl import URL

__all__ = ["send_hop"]

#: Methods aiohttp sends again when a pooled connection turns out to be closed.
_RESENDABLE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: The response parser's limits: ``ClientSession``'s defaults, which the transport never changes.
_MAX_LINE_SIZE = 8190
_MAX_FIELD_SIZE = 8190
_MAX_HEADERS = 128
#: ``TCPConnector``'s default: where aiohttp starts rounding a read timeout up to a second.
_CONNECTOR_CEIL_THRESHOLD = 5.0
#: Errors of the connect phase: never resent (aiohttp's rule too).
_CONNECT_ERRORS = (ce.ConnectionTimeoutError, ce.ClientConnectorError)


async def send_hop(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    client_timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """Send one request (no redirects followed) and return its response, head read.

    ``headers`` are added to the session's default headers, replacing any of the same name.
    The caller reads or releases the response; ``client_timeout.total`` bounds the whole exchange.
    A bytes body needs no closing afterwards (aiohttp's ``BytesPayload`` holds no resource).
    """
    connector = session.connector
    if session.closed or connector is None:
        raise RuntimeError("Session is closed")
    loop = asyncio.get_running_loop()
    merged: CIMultiDict[str] = CIMultiDict(session.headers)
    merged.update(headers)
    tm = TimeoutHandle(loop, client_timeout.total, ceil_threshold=client_timeout.ceil_threshold)
    handle = tm.start()
    try:
        timer = tm.timer()
        with timer:
            resend = method in _RESENDABLE
            while True:
                req = ClientRequest(
                    method,
                    url,
                    headers=merged,
                    data=body,
                    loop=loop,
                    timer=timer,
                    session=session,
                    ssl=True,
                )
                try:
                    resp = await _exchange(connector, req, timer, client_timeout)
                except _CONNECT_ERRORS:
                    raise
                except (ce.ClientOSError, ce.ServerDisconnectedError):
                    if not resend:
                        raise
                    resend = False  # the pooled connection was stale: once more, on a new one
                    await req.close()
                    continue
                except ce.ClientError:
                    raise
                except OSError as exc:
                    if exc.errno is None and isinstance(exc, TimeoutError):
                        raise
                    raise ce.ClientOSError(*exc.args) from exc
                break
    except BaseException:
        tm.close()
        if handle is not None:
            handle.cancel()
        raise
    if handle is not None:
        if resp.connection is not None:
            resp.connection.add_callback(handle.cancel)  # the body read stays under the timer
        else:
            handle.cancel()
    return resp


async def _exchange(
    connector: aiohttp.BaseConnector,
    req: ClientRequest,
    timer: BaseTimerContext,
    client_timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """Take a connection, send ``req`` and read the response head; close what fails."""
    try:
        conn = await connector.connect(req, traces=[], timeout=client_timeout)
    except TimeoutError as exc:
        # The origin only: the URL's path and query may carry credentials.
        raise ce.ConnectionTimeoutError(f"Connection timeout to {req.url.origin()}") from exc
    protocol = conn.protocol
    if protocol is None:  # the connection was closed as it was handed over
        conn.close()
        raise ce.ServerDisconnectedError()
    protocol.set_response_params(
        timer=timer,
        skip_payload=req.method == "HEAD",
        read_until_eof=True,
        auto_decompress=True,
        read_timeout=client_timeout.sock_read,
        read_bufsize=DEFAULT_CHUNK_SIZE,
        timeout_ceil_threshold=_CONNECTOR_CEIL_THRESHOLD,
        max_line_size=_MAX_LINE_SIZE,
        max_field_size=_MAX_FIELD_SIZE,
        max_headers=_MAX_HEADERS,
    )
    try:
        resp = await req.send(conn)
        try:
            await resp.start(conn)
        except BaseException:
            resp.close()
            raise
    except BaseException:
        conn.close()
        raise
    return resp
