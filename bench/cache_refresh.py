"""What the store-backed integration source's cache refresh costs, and its share per request.

Every ``CALLOUT_CACHE_TTL_MS`` (default 5 s) the source re-reads a cached spec version's status
and connection's revision (two small queries). This measures the CPU of one refresh of both
against a lookup served from the cache, in the same process, on SQLite, and prints what a
refresh adds to each request at a few request rates with the default TTL.

    .venv/bin/python bench/cache_refresh.py [--refreshes 300]

The last line printed is one JSON object: {"refresh_us", "cached_us", "ratio", "per_request_us"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import node_throughput as nt

from callout.service.integrations import StoreIntegrationSource
from callout.settings import Settings

_DEFAULT_TTL_S = Settings.model_fields["cache_ttl_ms"].default / 1000


async def _measure(refreshes: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        rt, _flow, node = await nt._store_runtime(9999, Path(tmp) / "store")
        try:
            call = node.flow.nodes[node.node_id]
            connection_id = call.connection_id  # type: ignore[attr-defined]
            now = [0.0]  # the source's clock: moved past the TTL to make entries stale
            source = StoreIntegrationSource(
                rt.specs, rt.connections, ttl_s=_DEFAULT_TTL_S, clock=lambda: now[0]
            )

            async def both() -> None:
                await source.spec("bench", "bench-crm", 1)
                await source.connection("bench", connection_id)

            async def timed(step_s: float) -> float:
                started = time.process_time()  # counts aiosqlite's thread too
                for _ in range(refreshes):
                    now[0] += step_s
                    await both()
                return (time.process_time() - started) / refreshes * 1e6

            await both()
            cached_us = await timed(0.0)  # within the TTL: from the cache
            refresh_us = await timed(_DEFAULT_TTL_S + 1)  # each lookup refreshes its entry
        finally:
            await rt.aclose()
    rates = (100, 1000, 4000)
    per_request = {f"{r} req/s": round(refresh_us / (r * _DEFAULT_TTL_S), 3) for r in rates}
    return {
        "refresh_us": round(refresh_us, 1),
        "cached_us": round(cached_us, 2),
        "ratio": round(cached_us / refresh_us, 5),
        "per_request_us": per_request,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=300)
    args = parser.parse_args()
    figures = asyncio.run(_measure(args.refreshes))
    print(f"one refresh of a spec and a connection: {figures['refresh_us']:,} us CPU")
    print(f"the same lookups from the cache: {figures['cached_us']} us CPU")
    for rate, share in figures["per_request_us"].items():  # type: ignore[attr-defined]
        print(f"share per request at {rate}, TTL {_DEFAULT_TTL_S:g} s: {share} us")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
