"""Helpers for tests of code that embeds Callout: real upstream servers on 127.0.0.1.

Upstreams in tests are real servers, not mocks. ``serve_app`` runs an aiohttp application;
``serve_raw`` runs a bare TCP handler for responses no HTTP framework would send (malformed
status lines, a reset in the middle of a body).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

__all__ = ["Upstream", "serve_app", "serve_raw"]

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True)
class Upstream:
    """A server listening on 127.0.0.1; ``url("/x")`` builds a URL on it."""

    host: str
    port: int

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"{self.origin}{path}"


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[Upstream]:
    """Run ``app`` on a free port of 127.0.0.1 for the duration of the block."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield Upstream("127.0.0.1", port)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_raw(handler: RawHandler) -> AsyncIterator[Upstream]:
    """Run a bare TCP ``handler(reader, writer)`` on a free port of 127.0.0.1."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Upstream("127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()
