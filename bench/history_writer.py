"""The history writer process's own cost a run, by frame size, against the database's share.

Runs of the integration flow (``node_throughput.py``'s, against its upstream) are made once and
turned into what the serving process hands over (``run_bytes``). Then the writer's loop
(``history_writer.serve``, what ``python -m callout.service.history_writer`` runs) runs in this
process, with the collector tuned as that process tunes it (``tune_collector``), on a new
SQLite store, fed frames of each ``--frames`` size one at a time, each sent
once the last is acknowledged (a writer that keeps up gets the runs of one loop turn at a time),
and then all frames at once (a writer that fell behind stores what came in one transaction).
The baseline, in the same process: the same rows, already scrubbed and encoded, written by
``sqlite3`` alone in transactions of the same size: what the database itself costs. Figures are
CPU a run of this process (the writer's loop and the database both run in it); the ratio is
baseline / writer.

    PYTHONPATH=build/compiled .venv/bin/python bench/history_writer.py [--runs 2000]
        [--frames 1,10,200]

The last line printed is one JSON object: {"<frames>": {"writer_us", "database_us", "ratio"}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import marshal
import tempfile
import time
from pathlib import Path
from typing import Any

import node_throughput as nt

from callout.engine.wire import run_from_wire
from callout.service.history_process import ACK, FRAME, MARSHAL_VERSION, run_bytes
from callout.service.history_writer import serve, tune_collector
from callout.service.runtime import database_url, initialise
from callout.settings import Settings
from callout.store.db import Database
from callout.store.history import HistoryStore


async def _runs(port: int, count: int) -> list[bytes]:
    """``count`` runs of the integration flow, as the serving process hands them over."""
    with tempfile.TemporaryDirectory() as tmp:
        rt, flow, _ = await nt._store_runtime(port, Path(tmp) / "made", writer="inline")
        try:
            made = []
            for i in range(count):
                scopes: dict[str, Any] = {"event": {"from": f"+1555{i}"}, "vars": {"i": i}}
                result = await rt.engine.run_flow(flow, org_id="bench", **scopes)
                assert result.vars["crmId"] == "c-1001"
                made.append(run_bytes(result, "bench"))
            return made
        finally:
            await rt.aclose()


async def _new_store(root: Path, name: str) -> str:
    settings = Settings(data_dir=root / name, egress_allow="127.0.0.1/32")
    await initialise(settings)
    return database_url(settings)


class _Acks:
    """The writer's stdout: counts acknowledgements and wakes whoever waits for one."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived = asyncio.Event()

    def write(self, data: bytes) -> int:
        self.count += len(data) // ACK.size
        self.arrived.set()
        return len(data)

    def flush(self) -> None:
        pass


def _frames(runs: list[bytes], size: int) -> list[bytes]:
    frames = []
    for seq, first in enumerate(range(0, len(runs), size), 1):
        payload = marshal.dumps(runs[first : first + size], MARSHAL_VERSION)
        frames.append(FRAME.pack(seq, len(payload)) + payload)
    return frames


async def _writer_cpu(url: str, frames: list[bytes], *, one_at_a_time: bool) -> float:
    """CPU seconds the writer's loop takes to store ``frames``."""
    config = marshal.dumps({"database_url": url}, MARSHAL_VERSION)
    reader, acks = asyncio.StreamReader(limit=1 << 30), _Acks()
    reader.feed_data(FRAME.pack(0, len(config)) + config)
    started = time.process_time()
    writer = asyncio.create_task(serve(reader, acks))  # type: ignore[arg-type]  # a sink
    for seq, frame in enumerate(frames, 1):
        reader.feed_data(frame)
        while one_at_a_time and acks.count < seq:
            acks.arrived.clear()
            await acks.arrived.wait()
    reader.feed_eof()
    await writer
    assert acks.count == len(frames)
    return time.process_time() - started


async def _database_cpu(url: str, runs: list[bytes], size: int) -> float:
    """CPU seconds sqlite3 alone takes to store the writer's rows, ``size`` runs a transaction."""
    db = Database(url)
    store = HistoryStore(db)
    encoded = [store.encode(*run_from_wire(marshal.loads(run))) for run in runs]  # noqa: S302
    connection = db.blocking_sqlite()
    assert connection is not None
    try:
        runs_sql, events_sql = store._runs_sql, store._events_sql
        started = time.process_time()
        for first in range(0, len(encoded), size):
            batch = encoded[first : first + size]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(runs_sql, [e.run for e in batch])
            connection.executemany(events_sql, [row for e in batch for row in e.events])
            connection.execute("COMMIT")
        return time.process_time() - started
    finally:
        connection.close()
        await db.dispose()


async def _measure(port: int, count: int, sizes: list[int]) -> dict[str, dict[str, float]]:
    runs = await _runs(port, count)
    # The collector as the writer process runs it; what this process made so far (the
    # runs, the engine that made them) is frozen out of it, as the writer's modules are.
    tune_collector()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [(str(size), size, True) for size in sizes] + [("all at once", len(runs), False)]
        for label, size, one_at_a_time in cases:
            frames = _frames(runs, size) if one_at_a_time else _frames(runs, min(sizes))
            writer = await _writer_cpu(
                await _new_store(root, f"w{label}"), frames, one_at_a_time=one_at_a_time
            )
            database = await _database_cpu(await _new_store(root, f"d{label}"), runs, size)
            writer_us, database_us = writer / count * 1e6, database / count * 1e6
            figures[label] = {
                "writer_us": round(writer_us, 1),
                "database_us": round(database_us, 1),
                "ratio": round(database_us / writer_us, 3),
            }
            shown = f"frames of {label} runs" if one_at_a_time else f"{count} runs at once"
            print(
                f"{shown}: writer {writer_us:,.1f} us of CPU a run, of which sqlite3 alone would "
                f"take {database_us:,.1f} us (ratio {database_us / writer_us:.3f})",
                flush=True,
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--frames", default="1,10,200", help="frame sizes, in runs")
    args = parser.parse_args()
    sizes = [int(size) for size in args.frames.split(",")]
    with nt.upstream_process() as (port, _):
        figures = asyncio.run(_measure(port, args.runs, sizes))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
