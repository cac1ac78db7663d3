"""The history recorder: batched background writes that wait, retry and flush; no run is lost."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from callout.engine.engine import Engine
from callout.engine.runner import CompiledFlow
from callout.engine.services import EngineConfig
from callout.guard import EgressPolicy
from callout.service.history import HistoryRecorder, RunRecorder, retention_cutoff
from callout.service.history_process import ProcessHistoryRecorder
from callout.store.db import Database
from callout.store.errors import StoreError
from callout.store.history import HistoryStore, RunRecord
from callout.store.models import RunEvent
from callout.testing import serve_app
from tests.store.helpers import encoded_forms, sqlite_files

LOOPBACK = EgressPolicy.from_entries(["127.0.0.1/32"])
TOKEN = "tok-SECRET-9f8e7d"


def three_nodes() -> dict[str, Any]:
    return {
        "id": "f3",
        "name": "three nodes",
        "nodes": [
            {"id": "start", "type": "onFlowStart", "on": {"__next": "a"}},
            {
                "id": "a",
                "type": "setVariable",
                "config": {"name": "x", "value": 1},
                "on": {"__next": "b"},
            },
            {"id": "b", "type": "setVariable", "config": {"name": "y", "value": "{{event.n}}"}},
        ],
    }


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return value if value is not None else 0.0


async def event_rows(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(RunEvent))).scalar_one())


class GatedStore(HistoryStore):
    """A store whose writes wait for ``release``; ``entered`` is set when one starts."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def write_batch(self, runs: Sequence[RunRecord]) -> None:
        self.entered.set()
        await self.release.wait()
        await super().write_batch(runs)


class FlakyStore(HistoryStore):
    """A store whose first ``failures`` writes raise."""

    def __init__(self, db: Database, failures: int) -> None:
        super().__init__(db)
        self.failures = failures

    async def write_batch(self, runs: Sequence[RunRecord]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        await super().write_batch(runs)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(EngineConfig(egress=LOOPBACK)) as eng:
        yield eng


@pytest.fixture
def flow(engine: Engine) -> CompiledFlow:
    return engine.load_flow(three_nodes())


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def store(database: Database) -> HistoryStore:
    return HistoryStore(database)


@pytest.fixture(params=["inline", "process"])
async def recorder(
    request: pytest.FixtureRequest,
    store: HistoryStore,
    database: Database,
    registry: CollectorRegistry,
) -> AsyncIterator[RunRecorder]:
    """Each recorder a runtime can use (CALLOUT_HISTORY_WRITER): the same contract."""
    rec: RunRecorder
    if request.param == "inline":
        rec = HistoryRecorder(store, registry=registry)
    else:
        rec = ProcessHistoryRecorder(database_url(database), registry=registry)
    await rec.start()
    yield rec
    await rec.close()


def database_url(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


async def test_flush_makes_recorded_runs_visible(
    engine: Engine,
    flow: CompiledFlow,
    store: HistoryStore,
    recorder: RunRecorder,
    registry: CollectorRegistry,
) -> None:
    """After flush(), every recorded run is stored with its events, and counted as written."""
    results = [await engine.run_flow(flow, event={"n": i}) for i in range(3)]
    for result in results:
        await recorder.record(result, "org-a")
    await recorder.flush()
    assert await store.count("org-a") == 3
    got = await store.get("org-a", results[2].run_id)
    assert got is not None
    assert got.path == ["start", "a", "b"]
    assert got.vars == {"x": 1, "y": 2}
    assert [e["nodeId"] for e in got.events] == ["start", "a", "b"]
    assert got.events[2]["varsChanged"] == {"y": 2}
    assert sample(registry, "callout_history_runs_written_total") == 3


async def test_flush_does_not_wait_for_the_flush_interval(
    engine: Engine, flow: CompiledFlow, store: HistoryStore, registry: CollectorRegistry
) -> None:
    """flush() cuts the batch short instead of waiting out a long flush_interval."""
    rec = HistoryRecorder(store, flush_interval=30.0, registry=registry)
    await rec.start()
    await rec.record(await engine.run_flow(flow, event={"n": 1}), None)
    started = time.perf_counter()
    await rec.flush()
    assert time.perf_counter() - started < 5.0
    assert await store.count(None) == 1
    await rec.close()


async def test_close_writes_everything_queued(
    engine: Engine, flow: CompiledFlow, database: Database, registry: CollectorRegistry
) -> None:
    """An orderly close() writes every queued run before it returns; later records are refused."""
    store = HistoryStore(database)
    rec = HistoryRecorder(store, batch_size=7, flush_interval=30.0, registry=registry)
    with pytest.raises(StoreError, match="start"):
        await rec.record(await engine.run_flow(flow, event={"n": 0}), "org-a")
    await rec.start()
    for i in range(50):
        await rec.record(await engine.run_flow(flow, event={"n": i}), "org-a")
    await rec.close()
    assert await store.count("org-a") == 50
    assert await event_rows(database) == 150
    with pytest.raises(StoreError, match="not running"):
        await rec.record(await engine.run_flow(flow, event={"n": 0}), "org-a")


async def test_a_full_queue_makes_record_wait_and_loses_nothing(
    engine: Engine, flow: CompiledFlow, database: Database, registry: CollectorRegistry
) -> None:
    """With the queue full behind a stalled write, record_nowait() queues nothing and counts
    nothing, record() waits and is counted, and all arrive."""
    store = GatedStore(database)
    rec = HistoryRecorder(store, queue_size=1, batch_size=1, flush_interval=0, registry=registry)
    await rec.start()
    results = [await engine.run_flow(flow, event={"n": i}) for i in range(3)]
    assert rec.record_nowait(results[0], None)  # room: queued at once
    await store.entered.wait()  # the writer holds run 0 and is stuck writing it
    await rec.record(results[1], None)  # fills the queue
    assert not rec.record_nowait(results[2], None)
    assert sample(registry, "callout_history_queue_full_total") == 0
    third = asyncio.create_task(rec.record(results[2], None))
    await asyncio.sleep(0)  # one turn of the loop: the task runs until it waits
    assert not third.done()
    assert sample(registry, "callout_history_queue_full_total") == 1
    assert sample(registry, "callout_history_queue_depth") == 1
    store.release.set()
    await third
    await rec.flush()
    assert await store.count(None) == 3
    assert sample(registry, "callout_history_queue_depth") == 0
    await rec.close()


async def test_a_bounded_close_gives_up_on_a_stuck_store(
    engine: Engine, flow: CompiledFlow, database: Database, registry: CollectorRegistry
) -> None:
    """close() under asyncio.timeout returns when the store never answers, writer stopped."""
    store = GatedStore(database)
    rec = HistoryRecorder(store, registry=registry)
    HistoryRecorder(store, registry=registry)  # a second recorder shares the registry's metrics
    await rec.start()
    await rec.record(await engine.run_flow(flow, event={"n": 1}), None)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await rec.close()
    assert rec._task is not None
    assert rec._task.done()
    assert await store.count(None) == 0


async def test_failed_writes_are_retried_until_they_succeed(
    engine: Engine, flow: CompiledFlow, database: Database, registry: CollectorRegistry
) -> None:
    """A store that fails its first writes loses nothing: the batch is kept and retried."""
    store = FlakyStore(database, failures=3)
    rec = HistoryRecorder(store, batch_size=4, flush_interval=0.01, registry=registry)
    await rec.start()
    for i in range(10):
        await rec.record(await engine.run_flow(flow, event={"n": i}), "org-a")
    await rec.flush()
    assert store.failures == 0
    assert await store.count("org-a") == 10
    assert await event_rows(database) == 30
    assert sample(registry, "callout_history_write_errors_total") == 3
    assert sample(registry, "callout_history_runs_written_total") == 10
    await rec.close()


async def test_write_stores_a_batch_at_once_and_retries_it_like_the_queue(
    engine: Engine, flow: CompiledFlow, database: Database, registry: CollectorRegistry
) -> None:
    """write() (the writer process's batches) needs no start(): it returns once the runs are
    stored, through the same retries as queued runs, and counts them the same way."""
    store = FlakyStore(database, failures=2)
    rec = HistoryRecorder(store, registry=registry)
    results = [await engine.run_flow(flow, event={"n": i}) for i in range(5)]
    await rec.write([(result, "org-a") for result in results])
    assert store.failures == 0
    assert await store.count("org-a") == 5
    assert await event_rows(database) == 15
    assert sample(registry, "callout_history_write_errors_total") == 2
    assert sample(registry, "callout_history_runs_written_total") == 5


class TurnCountingStore(HistoryStore):
    """A store that notes, as each batch's write starts, how many turns ``ticker`` counted."""

    def __init__(self, db: Database, ticker: list[int]) -> None:
        super().__init__(db)
        self.ticker = ticker
        self.turns_at_write: list[int] = []

    async def write_batch(self, runs: Sequence[RunRecord]) -> None:
        self.turns_at_write.append(self.ticker[0])
        await super().write_batch(runs)


@pytest.mark.parametrize(("cooperative", "other_tasks_run"), [(True, True), (False, False)])
async def test_write_lets_the_loop_run_between_runs_unless_told_not_to(
    engine: Engine,
    flow: CompiledFlow,
    database: Database,
    registry: CollectorRegistry,
    cooperative: bool,
    other_tasks_run: bool,
) -> None:
    """Encoding a batch is CPU work: in a serving process the calls must run in between; the
    writer process, whose loop has nothing else to run, encodes its batch in one go."""
    ticker = [0]

    async def tick() -> None:
        while True:
            ticker[0] += 1
            await asyncio.sleep(0)

    store = TurnCountingStore(database, ticker)
    rec = HistoryRecorder(store, registry=registry)
    results = [await engine.run_flow(flow, event={"n": i}) for i in range(12)]
    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0)  # the ticker is running
    try:
        before = ticker[0]
        await rec.write([(result, "org-a") for result in results], cooperative=cooperative)
    finally:
        ticking.cancel()
    assert (store.turns_at_write[0] > before) is other_tasks_run
    assert await store.count("org-a") == 12


async def test_a_thousand_concurrent_runs_each_produce_complete_history(
    engine: Engine,
    flow: CompiledFlow,
    store: HistoryStore,
    recorder: RunRecorder,
    database: Database,
) -> None:
    """1,000 runs at once, each recorded as it ends: 1,000 runs and 3,000 events, none missing."""

    async def run_and_record(n: int) -> str:
        result = await engine.run_flow(flow, event={"n": n}, org_id="org-a")
        await recorder.record(result, "org-a")
        return result.run_id

    run_ids = await asyncio.gather(*(run_and_record(n) for n in range(1000)))
    await recorder.flush()
    assert len(set(run_ids)) == 1000
    assert await store.count("org-a") == 1000
    assert await event_rows(database) == 3000
    async with database.session() as s:
        per_run = (
            await s.execute(select(RunEvent.run_id, func.count()).group_by(RunEvent.run_id))
        ).all()
    assert dict(per_run) == dict.fromkeys(run_ids, 3)


def echo_headers() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"headers": dict(request.headers)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_stored_history_holds_no_secret(
    engine: Engine, store: HistoryStore, recorder: RunRecorder, database: Database
) -> None:
    """A bearer token echoed by the upstream, and copied by a later node, is stored nowhere."""
    async with serve_app(echo_headers()) as up:
        doc = {
            "id": "leaky",
            "name": "echoes its credentials",
            "nodes": [
                {"id": "start", "type": "onFlowStart", "on": {"__next": "call"}},
                {
                    "id": "call",
                    "type": "apiCall",
                    "config": {
                        "mode": "http",
                        "url": up.url("/echo?probe=1"),
                        "auth": {"type": "bearer", "token": TOKEN},
                        "responseVar": "crm",
                    },
                    "on": {"__next": "copy"},
                },
                {
                    "id": "copy",
                    "type": "setVariable",
                    "config": {"name": "seen", "value": "{{vars.crm.headers.Authorization}}"},
                },
            ],
        }
        result = await engine.run_flow(doc, org_id="org-a")
    assert result.status == "completed", result.error
    assert result.vars["seen"] == f"Bearer {TOKEN}"  # the live run really had the token
    await recorder.record(result, "org-a")
    await recorder.close()
    stored = await store.get("org-a", result.run_id)
    assert stored is not None
    assert [e["nodeId"] for e in stored.events] == ["start", "call", "copy"]
    text = json.dumps([stored.vars, stored.error, stored.events]).encode()
    forms = [*encoded_forms(TOKEN), base64.b64encode(f"Bearer {TOKEN}".encode())]
    assert [f for f in forms if f in text] == []
    if database.dialect == "sqlite":
        await database.dispose()  # checkpoint nothing away: read every file as it is
        for path in sqlite_files(database):
            data = path.read_bytes()
            assert [f for f in forms if f in data] == [], path.name


def test_retention_cutoff_is_now_minus_the_days() -> None:
    """The cutoff is `days` before now; less than a day, or a naive now, is refused."""
    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
    assert retention_cutoff(30, now) == datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
    assert retention_cutoff(1).tzinfo is not None
    with pytest.raises(ValueError, match="at least 1 day"):
        retention_cutoff(0, now)
    with pytest.raises(ValueError, match="aware"):
        retention_cutoff(1, datetime(2026, 5, 20))
