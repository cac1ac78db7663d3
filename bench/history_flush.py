"""How long the flush at the end of a benchmark block takes with the history writer process.

``node_throughput.py`` drives each variant in blocks and ends every block of the history
variant with ``recorder.flush()`` (history must be written, not just queued). This times blocks
of ``--block`` runs of the integration flow with history, pinned as ``node_throughput.py --pin``
pins them, and the flush that ends each: what the writer still has to store when the runs stop.

Then, with the writer idle, it times single runs from the moment each ends to the moment the
writer has stored it (``callout_history_runs_written_total`` moves), without ``flush()``: how
soon history shows a run.

    PYTHONPATH=build/compiled .venv/bin/python bench/history_flush.py [--block 500] [--blocks 12]
        [--single 30]
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
from prometheus_client import REGISTRY


async def _measure(port: int, block: int, blocks: int, single: int) -> None:
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
            stored = [await _stored_after(load, i) for i in range(single)]
    print(
        f"block of {block} runs with its flush: median {statistics.median(whole):.1f} ms, of "
        f"which the flush {statistics.median(flushes):.1f} ms "
        f"(from {min(flushes):.1f} to {max(flushes):.1f} ms)"
    )
    print(
        f"one run, the writer idle, from its end to stored: median "
        f"{statistics.median(stored):.1f} ms (from {min(stored):.1f} to {max(stored):.1f} ms)"
    )


def _written() -> float:
    return REGISTRY.get_sample_value("callout_history_runs_written_total") or 0.0


async def _stored_after(load: nt.Load, i: int) -> float:
    """Milliseconds from the end of run ``i`` to its being stored (no flush); the writer is
    idle when it starts, and again when it returns."""
    assert load.finish is not None
    await load.finish()
    before = _written()
    await load.one(i)  # run_and_record: the run has ended and been handed over
    ended = time.perf_counter()
    # The writer is another process: no event to wait on here, so look again shortly.
    while _written() <= before:  # noqa: ASYNC110
        await asyncio.sleep(0.0002)
    return (time.perf_counter() - ended) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--single", type=int, default=30)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    with nt.upstream_process(1) as (port, _):
        nt._use_uvloop()
        asyncio.run(_measure(port, args.block, args.blocks, args.single))


if __name__ == "__main__":
    main()
