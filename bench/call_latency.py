"""Call latency at a steady arrival rate: does writing run history slow the call path?

``node_throughput.py`` measures throughput at saturation: 64 calls always in flight, every core
busy, so any CPU history takes is throughput lost. SPEC §7 asks something else: that writing
history never slows the call path. That is a question about the latency a caller sees at the
load a service runs at, below saturation. Here requests arrive on a fixed schedule (open loop,
``--rate`` a second), whether or not the earlier ones have ended, and each call's latency runs
from the moment it was due to the moment its result is in, so a call that could not start on
time because the process was busy counts that wait too.

Three variants, driven in alternating blocks of ``--seconds`` so that all see the same stretch
of the shared machine's speed: raw aiohttp (the same request, as in ``node_throughput.py``), the
integration flow, and the same flow with its run history recorded by the writer process a
runtime uses by default. The writer stores every run while the calls go on (its CPU a run is
printed); each history block ends with a flush, outside the timing. The upstream is an aiohttp
server in another process; without ``--pin`` the upstream, this process and the writer share the
machine's 2 cores, with it this process has CPU 0 and the others CPU 1.

    PYTHONPATH=build/compiled .venv/bin/python bench/call_latency.py [--rate 1000]
        [--seconds 2] [--rounds 5] [--pin]

Printed: p50, p90, p99 and the maximum of each variant over every block, and the ratios of the
flow with history to the flow without (1.0: history costs the caller nothing). The last line is
one JSON object with those figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import node_throughput as nt

#: Variant key: the label printed.
VARIANTS = {"raw": "raw aiohttp", "flow": "integration flow", "history": "flow + history"}
PERCENTILES = (50, 90, 99)


async def _open_loop(
    one: Callable[[int], Awaitable[None]], rate: float, seconds: float
) -> list[float]:
    """Start ``one(i)`` at ``rate`` a second for ``seconds``, each on time whatever the others
    do; return each call's latency in ms, from the moment it was due until it ended."""
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    count = max(1, round(rate * seconds))
    interval = 1.0 / rate

    async def call(i: int, due: float) -> None:
        await one(i)
        latencies.append((time.perf_counter() - due) * 1000.0)

    start = time.perf_counter()
    for i in range(count):
        due = start + i * interval
        wait = due - time.perf_counter()
        if wait > 0:
            # The loop's timers tick in milliseconds: a call due within this tick starts with the
            # ones before it; its latency still counts from when it was due.
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(call(i, due)))
    await asyncio.gather(*tasks)
    return latencies


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def _measure(
    upstream: nt.Upstream, rate: float, seconds: float, rounds: int, writer_cpu: int | None
) -> dict[str, float]:
    latencies: dict[str, list[float]] = {key: [] for key in VARIANTS}
    cpu: dict[str, float] = dict.fromkeys(VARIANTS, 0.0)
    writer_used = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            loads = {
                "raw": await stack.enter_async_context(nt._raw_load(upstream.port)),
                "flow": await stack.enter_async_context(
                    nt._integration_load(upstream.port, Path(tmp) / "flow", run="flow")
                ),
                "history": await stack.enter_async_context(
                    nt._integration_load(upstream.port, Path(tmp) / "history", run="history")
                ),
            }
            writer = loads["history"].helper_pid
            if writer_cpu is not None and writer is not None:
                nt._pin(writer, writer_cpu)
            for load in loads.values():  # warm every path up before timing anything
                await nt._drive(500, 16, load.one, load.finish)
            order = list(VARIANTS)
            for r in range(rounds):
                line = []
                for key in order if r % 2 == 0 else order[::-1]:
                    load = loads[key]
                    before, writer_before = nt._cpu_s(None), nt._cpu_s(load.helper_pid)
                    block = await _open_loop(load.one, rate, seconds)
                    cpu[key] += nt._cpu_s(None) - before
                    if load.finish is not None:
                        await load.finish()  # the block's history written, before the next
                        writer_used += nt._cpu_s(load.helper_pid) - writer_before
                    latencies[key] += block
                    line.append(
                        f"{VARIANTS[key]} p50 {_percentile(block, 50):.2f} "
                        f"p99 {_percentile(block, 99):.2f} ms"
                    )
                print(f"round {r + 1}: " + " | ".join(line), flush=True)
    calls = len(latencies["raw"])
    print(
        "CPU a call (us): "
        + "; ".join(f"{VARIANTS[key]} {cpu[key] / calls * 1e6:.0f}" for key in VARIANTS)
        + f"; the history writer process {writer_used / calls * 1e6:.0f}"
    )
    figures: dict[str, float] = {"rate": rate, "calls_per_variant": calls}
    for key, values in latencies.items():
        figures.update(
            {f"{key}_p{p}_ms": round(_percentile(values, p), 3) for p in PERCENTILES}
            | {
                f"{key}_max_ms": round(max(values), 3),
                f"{key}_mean_ms": round(statistics.fmean(values), 3),
            }
        )
    for p in PERCENTILES:
        figures[f"history_p{p}_ratio"] = round(
            figures[f"history_p{p}_ms"] / figures[f"flow_p{p}_ms"], 3
        )
    figures["writer_cpu_us"] = round(writer_used / calls * 1e6, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="calls a second (default 1000)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="this process on CPU 0 alone; the upstream and the history writer on CPU 1",
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--rate and --seconds must be positive, --rounds at least 1")
    other = 1 if args.pin else None
    if args.pin:
        os.sched_setaffinity(0, {0})
    with nt.upstream_process(other) as upstream:
        loop_name = nt._use_uvloop()
        print(
            f"upstream: aiohttp on 127.0.0.1:{upstream.port} (separate process); client loop: "
            f"{loop_name}; {args.rate:,.0f} calls a second, blocks of {args.seconds} s, "
            f"{args.rounds} rounds; "
            + (
                "this process alone on CPU 0, the upstream and the history writer on CPU 1"
                if args.pin
                else "upstream, client, engine and history writer share the machine's 2 cores"
            )
        )
        figures = asyncio.run(_measure(upstream, args.rate, args.seconds, args.rounds, other))
    for key, label in VARIANTS.items():
        print(
            f"{label}: "
            + ", ".join(f"p{p} {figures[f'{key}_p{p}_ms']:.2f}" for p in PERCENTILES)
            + f", max {figures[f'{key}_max_ms']:.2f} ms"
        )
    print(
        "flow + history / flow: "
        + ", ".join(f"p{p} {figures[f'history_p{p}_ratio']:.2f}" for p in PERCENTILES)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
