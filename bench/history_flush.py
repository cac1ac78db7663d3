"""How long the flush at the end of a benchmark block takes with the history writer process.

``node_throughput.py`` drives each variant in blocks and ends every block of the history
variant with ``recorder.flush()`` (history must be written, not just queued). This times blocks
of ``--block`` runs of the integration flow with history, pinned as ``node_throughput.py --pin``
pins them, and the flush that ends each: what the writer still has to store when the runs stop.

    PYTHONPATH=build/compiled .venv/bin/python bench/history_flush.py [--block 500] [--blocks 12]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import node_throughput as nt


async def _measure(port: int, block: int, blocks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with nt._integration_load(port, Path(tmp) / "store", run="history") as load:
            assert load.helper_pid is not None
            assert load.finish is not None
            nt._pin(load.helper_pid, 1)
            whole, flushes = [], []
            for _ in range(blocks):
                started = time.perf_counter()
                await nt._drive(block, 64, load.one)
                ran = time.perf_counter()
                await load.finish()
                done = time.perf_counter()
                whole.append((done - started) * 1e3)
                flushes.append((done - ran) * 1e3)
    print(
        f"block of {block} runs with its flush: median {statistics.median(whole):.1f} ms, of "
        f"which the flush {statistics.median(flushes):.1f} ms "
        f"(from {min(flushes):.1f} to {max(flushes):.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=12)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    with nt.upstream_process(1) as port:
        nt._use_uvloop()
        asyncio.run(_measure(port, args.block, args.blocks))


if __name__ == "__main__":
    main()
