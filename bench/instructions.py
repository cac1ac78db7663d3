"""Client instructions per request, counted by valgrind: the throughput ratios without the noise.

On two shared cores a throughput ratio swings by ±0.15 between rounds a minute apart, because the
upstream, the load loop and the engine compete for the cores and the machine's speed drifts.
``valgrind --tool=callgrind`` counts the instructions the client process executes, whatever else
the machine is doing, so the same code gives the same count. Each variant of
``node_throughput.py`` runs here at two request counts; the difference divided by the difference
in requests is the cost of one request, setup and warm-up excluded. The upstream runs in its own
process, which valgrind does not follow (``--trace-children=no``); so does the history writer
process of the "history" variant, whose CPU ``node_throughput.py`` reports ("inline history"
keeps that work in the counted process). Raw aiohttp's count divided by
a variant's is the throughput ratio that variant would reach when the client's CPU is the limit,
at equal instructions per cycle (the engine is plain Python like aiohttp's client, so the two
should not differ much; the throughput benchmark remains the measurement of record).

    .venv/bin/python bench/instructions.py [--low 200] [--high 1200] [--variants raw,node,...]

Valgrind runs the client some fifty times slower than it runs natively, but the engine's
store-backed source still refreshes its cache every ``CALLOUT_CACHE_TTL_MS`` (5 s) of wall time.
At native speed (thousands of requests a second) a refresh comes once in ~20,000 requests; under
valgrind it came once in a few hundred, and at ~30M instructions a refresh (two queries through
SQLAlchemy and aiosqlite's thread) it added ~50k instructions to every integration request,
a cost no real deployment pays per request. So the workers here run with the TTL at an hour,
and the counts are the steady state; what a refresh costs per request at real pace is measured
separately (``bench/cache_refresh.py``).

About a minute per run, two runs per variant. The last line is JSON: instructions per request
and the ratio to raw for each variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import node_throughput as nt

VARIANTS = {
    "raw": "raw aiohttp",
    "http": "http node",
    "http-flow": "http flow",
    "node": "integration node",
    "flow": "integration flow",
    "history": "integration + history",
    "history-inline": "integration + inline history",
    "floor": "hand-written floor",
}
_COLLECTED = re.compile(r"Collected : (\d+)")
#: The cache TTL of the workers: no refresh within a run, at valgrind's pace (see above).
_STEADY_TTL_MS = 3_600_000


async def _worker(variant: str, n: int, port: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if variant == "raw":
            await nt._raw(port, n, 64)
        elif variant == "floor":
            await nt._floor(port, n, 64)
        elif variant in ("http", "http-flow"):
            await nt._callout(port, n, 64, whole_flow=variant == "http-flow")
        else:
            await nt._integration(port, n, 64, Path(tmp) / "store", run=variant)


def _count(variant: str, n: int) -> int:
    """Instructions the client process executes for ``n`` requests of ``variant`` (with setup)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=no",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            __file__,
            "--worker",
            variant,
            str(n),
        ]
        env = {**os.environ, "CALLOUT_CACHE_TTL_MS": str(_STEADY_TTL_MS)}
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)  # noqa: S603
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=200)
    parser.add_argument("--high", type=int, default=1200)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, n = args.worker
        with nt.upstream_process() as (port, _):
            nt._use_uvloop()
            asyncio.run(_worker(variant, int(n), port))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    chosen = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or "raw" not in chosen:
        raise SystemExit(f"--variants: choose from {', '.join(VARIANTS)}, raw included")
    per_request: dict[str, float] = {}
    for variant in chosen:
        low, high = _count(variant, args.low), _count(variant, args.high)
        per_request[variant] = (high - low) / (args.high - args.low)
        shown = f"{per_request[variant]:,.0f}"
        print(f"{VARIANTS[variant]}: {shown} instructions a request", flush=True)
    raw = per_request["raw"]
    figures = {
        v: {"instructions": round(count), "ratio": round(raw / count, 3)}
        for v, count in per_request.items()
    }
    for variant, figure in figures.items():
        extra = figure["instructions"] - round(raw)
        print(f"{VARIANTS[variant]}: ratio to raw {figure['ratio']:.3f} ({extra:+,} instructions)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
