"""Run history writes into a store that already holds many runs: time-ordered against random ids.

Run ids lead with the millisecond the run started (``engine.runner.new_run_id``), so the
indexes on them (the runs' primary key, the events' ``(run_id, seq)``) grow at one end. With
random ids (``run_`` + 24 random hex digits, as before), every write lands on a random page of
indexes that grow with history, and once they outgrow SQLite's page cache each write reads
pages back. This fills two SQLite stores with ``--stored`` runs each (one with either kind of
id), then times ``HistoryStore.write_batch`` writing ``--runs`` more in batches of 200 (the
history writer's batches) into each, in alternating batches, and prints the CPU and wall time a
run and the ratio of the two.

    .venv/bin/python bench/history_scale.py [--stored 300000] [--runs 10000]
        [--postgres postgresql+asyncpg://USER@HOST:PORT/postgres]

With ``--postgres`` (a server where USER may create databases) the two stores are two new
databases there, dropped afterwards, instead of SQLite files.

The runs are copies of one encoded run of a two-node flow (a setVariable node holding a
~300-character value), each under its own id; only the ids differ between the two stores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callout.engine.engine import Engine
from callout.engine.runner import new_run_id
from callout.engine.services import EngineConfig
from callout.service.runtime import database_url, initialise
from callout.settings import Settings
from callout.store.db import Database, open_database
from callout.store.history import EncodedRun, HistoryStore

BATCH = 200


def _random_id() -> str:
    return f"run_{os.urandom(12).hex()}"


async def _template(store: HistoryStore) -> EncodedRun:
    """One encoded run of a small flow, to copy under other ids."""
    async with Engine(EngineConfig()) as engine:
        flow = engine.load_flow(
            {
                "id": "bench-history",
                "nodes": [
                    {"id": "start", "type": "onFlowStart", "on": {"__next": "note"}},
                    {
                        "id": "note",
                        "type": "setVariable",
                        "config": {"name": "note", "value": "x" * 300},
                    },
                ],
            }
        )
        result = await engine.run_flow(flow, org_id="bench")
    return store.encode(result, "bench")


def _copies(template: EncodedRun, ids: Callable[[], str], n: int) -> list[EncodedRun]:
    out = []
    for _ in range(n):
        run_id = ids()
        run = (run_id, *template.run[1:])
        events = [(run_id, *event[1:]) for event in template.events]
        out.append(EncodedRun(run_id, run, events))
    return out


async def _store(directory: Path, url: str | None) -> tuple[Database, HistoryStore]:
    settings = Settings(data_dir=directory, database_url=url)
    await initialise(settings)
    db = await open_database(database_url(settings))
    return db, HistoryStore(db)


async def _on_server(server: str, statements: list[str]) -> None:
    """Run ``statements`` on ``server``'s own database, outside a transaction (CREATE DATABASE
    and DROP DATABASE refuse one); that database is not migrated."""
    admin = Database(server)
    try:
        async with admin.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await autocommit.exec_driver_sql(statement)
    finally:
        await admin.dispose()


async def _measure(stored: int, runs: int, postgres: str | None) -> dict[str, Any]:
    kinds: dict[str, Callable[[], str]] = {"random": _random_id, "ordered": new_run_id}
    if postgres is None:
        return await _measure_in(stored, runs, kinds, {})
    names = {kind: f"bench_history_{kind}_{os.getpid()}" for kind in kinds}
    await _on_server(postgres, [f'CREATE DATABASE "{name}"' for name in names.values()])
    base = postgres.rsplit("/", 1)[0]
    try:
        urls = {kind: f"{base}/{name}" for kind, name in names.items()}
        return await _measure_in(stored, runs, kinds, urls)
    finally:
        drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names.values()]
        await _on_server(postgres, drops)


async def _measure_in(
    stored: int, runs: int, kinds: dict[str, Callable[[], str]], urls: dict[str, str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stores = {kind: await _store(Path(tmp) / kind, urls.get(kind)) for kind in kinds}
        template = await _template(stores["ordered"][1])
        try:
            for kind, ids in kinds.items():
                store = stores[kind][1]
                for _ in range(0, stored, 1000):
                    await store.write_batch(_copies(template, ids, 1000))
            cpu = dict.fromkeys(kinds, 0.0)
            wall = dict.fromkeys(kinds, 0.0)
            for _ in range(0, runs, BATCH):
                for kind, ids in kinds.items():  # alternating: both see the same machine
                    batch = _copies(template, ids, BATCH)
                    c0, w0 = time.process_time(), time.perf_counter()
                    await stores[kind][1].write_batch(batch)
                    cpu[kind] += time.process_time() - c0
                    wall[kind] += time.perf_counter() - w0
            sizes = {
                kind: (Path(tmp) / kind / "callout.db").stat().st_size / 1e6
                for kind in kinds
                if (Path(tmp) / kind / "callout.db").exists()
            }
        finally:
            for db, _ in stores.values():
                await db.dispose()
    per_run = {kind: (cpu[kind] / runs * 1e6, wall[kind] / runs * 1e6) for kind in kinds}
    return {"per_run_us": per_run, "db_mb": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (SQLAlchemy form)")
    args = parser.parse_args()
    figures = asyncio.run(_measure(args.stored, args.runs, args.postgres))
    (rc, rw), (oc, ow) = figures["per_run_us"]["random"], figures["per_run_us"]["ordered"]
    print(
        f"{args.stored:,} runs stored, {args.runs:,} more written in batches of {BATCH} "
        f"({'PostgreSQL' if args.postgres else 'SQLite'}, this machine, nothing else "
        "running in this process):"
    )
    print(f"random ids (before): {rc:.1f} us CPU, {rw:.1f} us wall a run")
    print(f"time-ordered ids:    {oc:.1f} us CPU, {ow:.1f} us wall a run")
    sizes = f"; stores {figures['db_mb']} MB" if figures["db_mb"] else ""
    print(f"ordered / random: CPU {oc / rc:.3f}, wall {ow / rw:.3f}{sizes}")


if __name__ == "__main__":
    main()
