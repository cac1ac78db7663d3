"""Client CPU per request, layer by layer: where the engine's overhead over raw aiohttp goes.

The throughput benchmark is bound by the client's CPU (the upstream runs in another process), so
CPU per request is the figure to shrink. This measures it with ``time.process_time()`` around the
timed loop only (setup excluded), for: raw aiohttp, ``Transport.send`` alone, the http node
prepared once, and the integration node on a SQLite store. Each layer is paired with a raw
measurement just before it; the last line is JSON with the medians and the extra µs per request.

    .venv/bin/python bench/client_cpu.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from node_throughput import NODE, _store_runtime, _use_uvloop, upstream_process

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.guard import EgressPolicy
from callout.transport import OutboundRequest, Transport, TransportConfig

CONCURRENCY = 64
One = Callable[[int], Awaitable[None]]


async def _cpu_per_request(n: int, one: One) -> float:
    """Microseconds of this process's CPU per request, over ``n`` requests at 64 concurrent."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await one(0)  # warm one pooled connection and the caches
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / n * 1e6


async def _raw(port: int, n: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(i: int) -> None:
            url = f"http://127.0.0.1:{port}/v1/contacts/{i}?from=%2B1555{i}"
            async with session.post(url, json={"caller": f"+1555{i}", "attempt": i}) as resp:
                assert (await resp.json())["id"] == "c-1001"

        return await _cpu_per_request(n, one)


async def _transport(port: int, n: int) -> float:
    transport = Transport(TransportConfig(), EgressPolicy.from_entries(["127.0.0.1/32"]))

    async def one(i: int) -> None:
        body = json.dumps({"caller": f"+1555{i}", "attempt": i}).encode()
        url = f"http://127.0.0.1:{port}/v1/contacts/{i}?from=%2B1555{i}"
        headers = {"Content-Type": "application/json"}
        response = await transport.send(OutboundRequest("POST", url, headers, body))
        assert response.body["id"] == "c-1001"

    try:
        return await _cpu_per_request(n, one)
    finally:
        await transport.aclose()


async def _node(port: int, n: int) -> float:
    async with Engine(EngineConfig(egress=EgressPolicy.from_entries(["127.0.0.1/32"]))) as engine:
        node = engine.prepare_node(NODE)
        base = {"base": f"http://127.0.0.1:{port}"}

        async def one(i: int) -> None:
            result = await engine.run_node(
                node, event={"from": f"+1555{i}"}, vars={"i": i}, config=base
            )
            assert result.vars["crm"]["id"] == "c-1001"

        return await _cpu_per_request(n, one)


async def _integration(port: int, n: int, data_dir: Path) -> float:
    rt, _, node = await _store_runtime(port, data_dir)

    async def one(i: int) -> None:
        scopes: dict[str, Any] = {"event": {"from": f"+1555{i}"}, "vars": {"i": i}}
        result = await rt.engine.run_node(node, org_id="bench", **scopes)
        assert result.vars["crmId"] == "c-1001"

    try:
        return await _cpu_per_request(n, one)
    finally:
        await rt.aclose()


async def _measure(port: int, n: int, rounds: int) -> dict[str, float]:
    extra: dict[str, list[float]] = {"transport": [], "http node": [], "integration node": []}
    raws: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            layers: dict[str, Callable[[], Awaitable[float]]] = {
                "transport": lambda: _transport(port, n),
                "http node": lambda: _node(port, n),
                "integration node": lambda r=r: _integration(port, n, Path(tmp) / f"r{r}"),
            }
            line = []
            for name, measure in layers.items():
                raw = await _raw(port, n)
                ours = await measure()
                raws.append(raw)
                extra[name].append(ours - raw)
                line.append(f"{name} {ours:.0f} vs raw {raw:.0f} us")
            print(f"round {r + 1}: " + " | ".join(line))
    figures = {"raw_cpu_us": round(statistics.median(raws), 1)}
    for name, values in extra.items():
        figures[f"{name.replace(' ', '_')}_extra_cpu_us"] = round(statistics.median(values), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with upstream_process() as (port, _):
        print(
            f"client CPU per request (us), {args.requests} requests x {args.rounds} rounds, "
            f"64 concurrent, loop: {_use_uvloop()}; upstream in another process"
        )
        figures = asyncio.run(_measure(port, args.requests, args.rounds))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
