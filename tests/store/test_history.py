"""Run history storage: batched writes, org-scoped reads, listing order, purge by age."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from callout.engine.runner import RunResult
from callout.store import history
from callout.store.db import Database, open_database
from callout.store.history import HistoryStore, RunRecord
from callout.store.models import RunEvent

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


def event(node_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "nodeId": node_id,
        "nodeType": "setVariable",
        "startedAt": at.timestamp(),
        "durationMs": 0.125,
        "route": None,
        "caseIndex": None,
        "varsChanged": {"x": 1},
        "error": None,
        **extra,
    }


def run(
    run_id: str,
    *,
    org_id: str | None = "org-a",
    flow_id: str = "f1",
    started_at: datetime = NOW,
    events: int = 2,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        org_id=org_id,
        flow_id=flow_id,
        status="completed",
        started_at=started_at,
        duration_ms=3,
        path=["start", *(f"n{i}" for i in range(events - 1))],
        error=None,
        ended_by="end",
        vars={"x": 1, "nested": {"list": [1, "two", None]}},
        events=[event(f"n{i}", started_at, seq=i) for i in range(events)],
    )


async def event_count(db: Database, run_id: str | None = None) -> int:
    query = select(func.count()).select_from(RunEvent)
    if run_id is not None:
        query = query.where(RunEvent.run_id == run_id)
    async with db.session() as s:
        return int((await s.execute(query)).scalar_one())


@pytest.fixture(params=[False, True], ids=["pooled", "blocking"])
def store(request: pytest.FixtureRequest, database: Database) -> Iterator[HistoryStore]:
    """A store on ``database``, writing through the pool or (as the writer process does) through
    its own blocking SQLite connection; on PostgreSQL ``blocking`` changes nothing."""
    history_store = HistoryStore(database, blocking=request.param)
    yield history_store
    history_store.close()


async def test_write_then_get_returns_the_run_and_its_events(
    database: Database, store: HistoryStore
) -> None:
    """A written run reads back equal: fields, aware start time, vars and events in order."""
    failed = RunRecord(
        run_id="r2",
        org_id=None,
        flow_id="f2",
        status="failed",
        started_at=NOW,
        duration_ms=7,
        path=["start"],
        error={"code": "run_deadline", "message": "late", "nodeId": "start"},
        ended_by="run_deadline",
    )
    await store.write_batch([run("r1", events=3), failed])
    got = await store.get("org-a", "r1")
    assert got == run("r1", events=3)
    assert got is not None
    assert got.started_at.tzinfo is not None
    assert [e["seq"] for e in got.events] == [0, 1, 2]
    assert await store.get(None, "r2") == failed
    assert await event_count(database) == 3


async def test_a_batch_written_twice_is_stored_once(
    database: Database, store: HistoryStore
) -> None:
    """write_batch is idempotent: a retried batch neither fails nor duplicates."""
    batch = [run("r1"), run("r2")]
    await store.write_batch(batch)
    await store.write_batch([*batch, run("r3")])
    assert await store.count("org-a") == 3
    assert await event_count(database) == 6


async def test_a_failed_batch_writes_nothing_and_the_next_one_is_written(
    database: Database, store: HistoryStore
) -> None:
    """A batch is one transaction: when one of its rows is refused (here an event whose run is
    not stored), none of its runs is kept, and the store goes on writing the next batch."""
    good = run("r1")
    orphan = store._encode_record(run("r2"))
    orphan = orphan._replace(run=("r-gone", *orphan.run[1:]))  # its events point at "r2"
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await store.write_batch([good, orphan])
    assert await store.count("org-a") == 0
    assert await event_count(database) == 0
    await store.write_batch([good, run("r3")])
    assert await store.count("org-a") == 2
    assert await event_count(database) == 4


async def test_a_blocking_store_on_an_in_memory_database_writes_through_the_pool() -> None:
    """An in-memory SQLite database lives in the pool's one connection: a blocking store could
    not reach it with a connection of its own, so it writes as a pooled one does."""
    db = await open_database("sqlite+aiosqlite://")
    store = HistoryStore(db, blocking=True)
    try:
        await store.write_batch([run("r1")])
        assert await store.count("org-a") == 1
        assert await event_count(db) == 2
    finally:
        store.close()
        await db.dispose()


async def test_another_org_can_neither_get_nor_list_a_run(database: Database) -> None:
    """Reads are scoped by org: another org's runs, and org-less runs, are invisible."""
    store = HistoryStore(database)
    await store.write_batch([run("ra", org_id="org-a"), run("rn", org_id=None)])
    assert await store.get("org-b", "ra") is None
    assert await store.get(None, "ra") is None
    assert await store.get("org-a", "rn") is None
    assert await store.list("org-b") == []
    assert [s.run_id for s in await store.list("org-a")] == ["ra"]
    assert [s.run_id for s in await store.list(None)] == ["rn"]
    assert (await store.count("org-a"), await store.count("org-b"), await store.count()) == (
        1,
        0,
        1,
    )


async def test_list_is_newest_first_filtered_and_paged(database: Database) -> None:
    """list() orders by start time (newest first), filters by flow and pages by time or cursor."""
    store = HistoryStore(database)
    runs = [
        run(f"r{i}", flow_id="f1" if i % 2 else "f2", started_at=NOW - timedelta(minutes=i))
        for i in range(6)
    ]
    await store.write_batch(runs)
    assert [s.run_id for s in await store.list("org-a")] == [f"r{i}" for i in range(6)]
    assert [s.run_id for s in await store.list("org-a", flow_id="f1")] == ["r1", "r3", "r5"]
    assert [s.run_id for s in await store.list("org-a", limit=2)] == ["r0", "r1"]
    older = await store.list("org-a", before=NOW - timedelta(minutes=3))
    assert [s.run_id for s in older] == ["r4", "r5"]
    first = (await store.list("org-a", limit=1))[0]
    assert (first.flow_id, first.status, first.event_count, first.ended_by) == (
        "f2",
        "completed",
        2,
        "end",
    )
    assert first.started_at == NOW


async def test_cursor_pages_have_no_gap_when_runs_share_a_start_time(database: Database) -> None:
    """Paging with RunSummary.cursor visits every run once, even within one instant."""
    store = HistoryStore(database)
    await store.write_batch([run(f"r{i}") for i in range(5)])
    seen: list[str] = []
    page = await store.list("org-a", limit=2)
    while page:
        seen += [s.run_id for s in page]
        page = await store.list("org-a", limit=2, before=page[-1].cursor)
    assert seen == ["r4", "r3", "r2", "r1", "r0"]


async def test_list_refuses_a_limit_below_one(database: Database) -> None:
    """A limit of 0 is a caller's mistake, refused rather than answered with nothing."""
    with pytest.raises(ValueError, match="limit"):
        await HistoryStore(database).list("org-a", limit=0)


async def test_purge_deletes_exactly_the_older_runs_and_their_events(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """purge() removes every org's runs started before the cutoff, with their events, in chunks."""
    monkeypatch.setattr(history, "PURGE_CHUNK", 3)  # 7 old runs: three chunks
    store = HistoryStore(database)
    old = [
        run(f"old{i}", org_id=("org-a", "org-b", None)[i % 3], started_at=NOW - timedelta(days=8))
        for i in range(7)
    ]
    edge = run("edge", started_at=NOW - timedelta(days=7))  # exactly at the cutoff: kept
    new = run("new", started_at=NOW - timedelta(days=1))
    await store.write_batch([*old, edge, new])
    assert await store.purge(NOW - timedelta(days=7)) == 7
    assert [s.run_id for s in await store.list("org-a")] == ["new", "edge"]
    assert await store.count("org-b") == 0
    assert await store.count(None) == 0
    assert await event_count(database) == 4
    assert await store.purge(NOW - timedelta(days=7)) == 0


async def test_from_result_keeps_fields_and_odd_values_are_stored_as_text(
    database: Database,
) -> None:
    """from_result keeps the run's fields; NaN and unknown objects are stored as text."""
    odd: dict[Any, Any] = {"nan": math.nan, "obj": object(), "ok": [1, "a"], 3: "int key"}
    result = RunResult(
        run_id="run_1",
        flow_id="f",
        status="completed",
        path=["start"],
        vars=odd,
        error=None,
        duration_ms=1.6,
        started_at=NOW.timestamp(),
    )
    record = RunRecord.from_result(result, "org-a")
    await HistoryStore(database).write_batch([record])
    stored = await HistoryStore(database).get("org-a", "run_1")
    assert stored is not None
    assert stored.vars == {"nan": "nan", "obj": "<object>", "ok": [1, "a"], "3": "int key"}
    assert (record.started_at, record.duration_ms, record.org_id) == (NOW, 2, "org-a")
    assert record.events == []


async def test_odd_values_are_stored_on_every_backend(database: Database) -> None:
    """A run whose vars held NaN or Infinity is stored (PostgreSQL's JSON refuses them raw)."""
    result = RunResult("run_2", "f", "completed", ["start"], {"x": math.inf}, None)
    store = HistoryStore(database)
    await store.write_batch([RunRecord.from_result(result, None)])
    got = await store.get(None, "run_2")
    assert got is not None
    assert got.vars == {"x": "inf"}
