"""Run history: runs and their node events, written in batches, read per org, purged by age.

Everything stored here is scrubbed before it is written: ``HistoryStore.encode`` (or
``RunRecord.from_result``) passes a run's vars, error and events through the run's scrubbers
(SPEC §7), so what ``write_batch`` stores holds no secret. Writes are idempotent (a run id
already stored is skipped), so a batch that is retried after an ambiguous failure (the commit
went through, its acknowledgement did not) neither fails nor duplicates.
"""

from __future__ import annotations

import builtins
import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Table, and_, delete, func, or_, select

from callout._jsontext import dumps
from callout.store.db import Database
from callout.store.models import Run, RunEvent

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from callout.engine.context import NodeEvent
    from callout.engine.runner import RunResult
    from callout.scrub import Scrubber

__all__ = [
    "MAX_LIST_LIMIT",
    "PURGE_CHUNK",
    "EncodedRun",
    "HistoryStore",
    "RunRecord",
    "RunSummary",
]

#: The most runs one ``list()`` returns.
MAX_LIST_LIMIT = 1000
#: Runs deleted per purge transaction: short transactions, so writers never wait long.
PURGE_CHUNK = 500


@dataclass(frozen=True)
class RunRecord:
    """One run as history keeps it: scrubbed vars, error and events (``NodeEvent.as_dict()``)."""

    run_id: str
    org_id: str | None
    flow_id: str
    status: str
    started_at: datetime  # aware UTC
    duration_ms: int
    path: list[str]
    error: dict[str, Any] | None
    ended_by: str
    vars: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: RunResult, org_id: str | None) -> RunRecord:
        """Materialise and scrub a finished run (the costly part; keep it off the call path)."""
        run = result.as_dict()  # vars and error through the run's scrubber
        # Each event is scrubbed of every secret the run used (NodeEvent.run_scrubber): a later
        # node may copy a secret out of a response (a setVariable from vars.crm...).
        events = [event.as_dict() for event in result.events]
        vars_, error = run["vars"], run["error"]
        return cls(
            run_id=result.run_id,
            org_id=org_id,
            flow_id=result.flow_id,
            status=result.status,
            started_at=datetime.fromtimestamp(result.started_at, UTC),
            duration_ms=round(result.duration_ms),
            path=list(result.path),
            error=error,
            ended_by=result.ended_by,
            vars=vars_,
            events=events,
        )


class EncodedRun(NamedTuple):
    """A run as the rows ``write_batch`` stores, scrubbed and encoded (``HistoryStore.encode``)."""

    run_id: str
    run: tuple[Any, ...]
    events: list[tuple[Any, ...]]


@dataclass(frozen=True)
class RunSummary:
    """One row of a run listing (no vars, no events)."""

    run_id: str
    org_id: str | None
    flow_id: str
    status: str
    started_at: datetime
    duration_ms: int
    ended_by: str
    event_count: int

    @property
    def cursor(self) -> tuple[datetime, str]:
        """Pass as ``list(before=...)`` for the page that follows this row."""
        return (self.started_at, self.run_id)


_RUNS: Table = Run.__table__  # type: ignore[assignment]  # declarative tables are Tables
_EVENTS: Table = RunEvent.__table__  # type: ignore[assignment]


_RUN_COLUMNS = (
    "id", "org_id", "flow_id", "status", "started_at", "duration_ms", "path", "error",
    "ended_by", "event_count", "vars",
)  # fmt: skip
_EVENT_COLUMNS = ("run_id", "seq", "node_id", "node_type", "started_at", "duration_ms", "data")


def _insert_sql(dialect: str, table: Table, columns: tuple[str, ...]) -> str:
    """An idempotent INSERT in the driver's own parameter style (qmark, or $n for asyncpg)."""
    assert {c.name for c in table.columns} == set(columns)  # noqa: S101  -- the models' columns
    marks = (
        ", ".join("?" for _ in columns)
        if dialect == "sqlite"
        else ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    )
    names = ", ".join(columns)
    # Our own table and column names only; every value goes as a parameter.
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


class HistoryStore:
    """Writes batches of runs, reads them back scoped by org, and purges them by age.

    ``blocking=True`` is for a process that does nothing but write history (the writer
    process): on SQLite, ``write_batch`` then writes through a plain ``sqlite3`` connection on
    the event loop's own thread, blocking it. Through aiosqlite each statement goes to a thread
    and back (nine round trips a transaction, 1-2 ms of CPU here), which cost more than the rows
    themselves in the small batches a writer that keeps up receives. Call ``close()`` after.
    """

    def __init__(self, db: Database, *, blocking: bool = False) -> None:
        self._db = db
        # An in-memory database lives in the pool's connection: only the pool can reach it.
        self._blocking = blocking and db.dialect == "sqlite" and not db.in_memory
        self._sqlite: sqlite3.Connection | None = None
        self._runs_sql = _insert_sql(db.dialect, _RUNS, _RUN_COLUMNS)
        self._events_sql = _insert_sql(db.dialect, _EVENTS, _EVENT_COLUMNS)
        # What the column type's own conversion gives (naive UTC text on SQLite, aware on
        # PostgreSQL), so what is written here reads back, compares and purges like every other
        # timestamp; done here because SQLAlchemy's processors cost ~6 us a value.
        self._stamp: Callable[[datetime], Any]
        self._epoch_stamp: Callable[[float], Any]
        if db.dialect == "sqlite":
            self._stamp, self._epoch_stamp = _sqlite_stamp, _sqlite_epoch_stamp
        else:
            self._stamp, self._epoch_stamp = _aware_stamp, _aware_epoch_stamp

    def encode(self, result: RunResult, org_id: str | None) -> EncodedRun:
        """Scrub and encode a finished run (the costly part; keep it off the call path).

        The rows are the ones ``write_batch`` makes of ``RunRecord.from_result(result,
        org_id)``, byte for byte, built without copying what has nothing to scrub
        (``Scrubber.to_json``, ``NodeEvent.as_json``).
        """
        run_id, scrubber, epoch_stamp = result.run_id, result.scrubber, self._epoch_stamp
        events = [
            _encoded_event(run_id, seq, event, epoch_stamp, self._stamp)
            for seq, event in enumerate(result.events)
        ]
        error = result.error
        run = (
            run_id,
            org_id,
            result.flow_id,
            result.status,
            epoch_stamp(result.started_at),
            round(result.duration_ms),
            _path_json(result.path),
            None if error is None else _scrubbed_json(scrubber, error),
            result.ended_by,
            len(events),
            _scrubbed_json(scrubber, result.vars),
        )
        return EncodedRun(run_id, run, events)

    def _encode_record(self, r: RunRecord) -> EncodedRun:
        stamp = self._stamp
        run = (
            r.run_id,
            r.org_id,
            r.flow_id,
            r.status,
            stamp(r.started_at),
            r.duration_ms,
            _json(r.path),
            None if r.error is None else _json(r.error),
            r.ended_by,
            len(r.events),
            _json(r.vars),
        )
        events = [_event_row(r.run_id, seq, e, stamp) for seq, e in enumerate(r.events)]
        return EncodedRun(r.run_id, run, events)

    async def write_batch(self, runs: Sequence[RunRecord | EncodedRun]) -> None:
        """Store ``runs`` and their events in one transaction; runs already stored are skipped.

        Rows go to the driver's ``executemany`` as tuples with JSON already encoded: history is
        the one high-volume write, and SQLAlchemy's per-row parameter processing cost about
        four times the SQL itself (~110 of ~140 us a run on SQLite).
        """
        if not runs:
            return
        encoded = [r if isinstance(r, EncodedRun) else self._encode_record(r) for r in runs]
        run_rows = [e.run for e in encoded]
        event_rows = [row for e in encoded for row in e.events]
        if self._blocking:
            self._write_blocking(run_rows, event_rows)
            return
        async with self._db.transaction() as session:
            connection = await session.connection()
            await connection.exec_driver_sql(self._runs_sql, run_rows)
            if event_rows:
                await connection.exec_driver_sql(self._events_sql, event_rows)

    def _write_blocking(
        self, run_rows: builtins.list[tuple[Any, ...]], event_rows: builtins.list[tuple[Any, ...]]
    ) -> None:
        connection = self._sqlite
        if connection is None:
            connection = self._sqlite = self._db.blocking_sqlite()
            assert connection is not None  # noqa: S101  -- a SQLite file, as __init__ checked
        # IMMEDIATE, as Database.transaction(): wait for the write lock (busy timeout) up front.
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(self._runs_sql, run_rows)
            if event_rows:
                connection.executemany(self._events_sql, event_rows)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the blocking connection, if one was opened (the pooled ones are the
        ``Database``'s)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def get(self, org_id: str | None, run_id: str) -> RunRecord | None:
        """The run with its events, or None if it is not stored or belongs to another org."""
        async with self._db.session() as session:
            run = (
                await session.execute(select(Run).where(Run.id == run_id, _org(org_id)))
            ).scalar_one_or_none()
            if run is None:
                return None
            data = (
                await session.execute(
                    select(RunEvent.data).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
                )
            ).scalars()
            events = builtins.list(data)
        return RunRecord(
            run_id=run.id,
            org_id=run.org_id,
            flow_id=run.flow_id,
            status=run.status,
            started_at=run.started_at,
            duration_ms=run.duration_ms,
            path=run.path,
            error=run.error,
            ended_by=run.ended_by,
            vars=run.vars if run.vars is not None else {},
            events=events,
        )

    async def list(
        self,
        org_id: str | None,
        *,
        flow_id: str | None = None,
        limit: int = 50,
        before: datetime | tuple[datetime, str] | None = None,
    ) -> builtins.list[RunSummary]:
        """The org's runs, newest first (at most ``limit``, up to ``MAX_LIST_LIMIT``).

        ``before`` is a time (runs started earlier) or a ``RunSummary.cursor`` (the runs after
        that one in this order, with no gap or repeat when several started in the same instant).
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = select(
            Run.id,
            Run.org_id,
            Run.flow_id,
            Run.status,
            Run.started_at,
            Run.duration_ms,
            Run.ended_by,
            Run.event_count,
        ).where(_org(org_id))
        if flow_id is not None:
            query = query.where(Run.flow_id == flow_id)
        if isinstance(before, datetime):
            query = query.where(Run.started_at < before)
        elif before is not None:
            at, run_id = before
            query = query.where(
                or_(Run.started_at < at, and_(Run.started_at == at, Run.id < run_id))
            )
        query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(
            min(limit, MAX_LIST_LIMIT)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return [RunSummary(*row) for row in rows]

    async def purge(self, older_than: datetime) -> int:
        """Delete the runs (every org's) started before ``older_than``, with their events.

        Works in transactions of ``PURGE_CHUNK`` runs, so the recorder's writes (and, on SQLite,
        every other writer) wait at most one chunk. Returns how many runs were deleted.
        """
        deleted = 0
        while True:
            async with self._db.transaction() as session:
                ids = (
                    await session.execute(
                        select(Run.id).where(Run.started_at < older_than).limit(PURGE_CHUNK)
                    )
                ).scalars()
                chunk = builtins.list(ids)
                if chunk:
                    await session.execute(delete(RunEvent).where(RunEvent.run_id.in_(chunk)))
                    await session.execute(delete(Run).where(Run.id.in_(chunk)))
            deleted += len(chunk)
            if len(chunk) < PURGE_CHUNK:
                return deleted

    async def count(self, org_id: str | None = None) -> int:
        """How many runs the org has (None: the runs recorded without an org)."""
        async with self._db.session() as session:
            query = select(func.count()).select_from(Run).where(_org(org_id))
            return int((await session.execute(query)).scalar_one())


def _org(org_id: str | None) -> ColumnElement[bool]:
    return Run.org_id.is_(None) if org_id is None else Run.org_id == org_id


def _encoded_event(
    run_id: str,
    seq: int,
    event: NodeEvent,
    epoch_stamp: Callable[[float], Any],
    stamp: Callable[[datetime], Any],
) -> tuple[Any, ...]:
    """``_event_row(run_id, seq, event.as_dict(), stamp)``, from ``event.as_json()`` when it
    can be built so."""
    data = event.as_json() if isinstance(event.started_at, (float, int)) else None
    if data is None:
        return _event_row(run_id, seq, event.as_dict(), stamp)
    return (
        run_id,
        seq,
        str(event.node_id),
        str(event.node_type),
        epoch_stamp(event.started_at),
        round(round(event.duration_ms, 3) or 0),
        data,
    )


def _event_row(
    run_id: str, seq: int, event: dict[str, Any], stamp: Callable[[datetime], Any]
) -> tuple[Any, ...]:
    started = event.get("startedAt")
    when = (
        datetime.fromtimestamp(started, UTC)
        if isinstance(started, int | float)
        else datetime.now(UTC)
    )
    return (
        run_id,
        seq,
        str(event.get("nodeId", "")),
        str(event.get("nodeType", "")),
        stamp(when),
        round(event.get("durationMs") or 0),
        _json(event),
    )


def _path_json(path: list[str]) -> str:
    """``_json(list(path))``: node ids, strict JSON already (the encoder's set-up saved)."""
    try:
        return dumps(path)
    except (TypeError, ValueError, RecursionError):
        return _json(list(path))


def _scrubbed_json(scrubber: Scrubber, value: Any) -> str:
    """``_json(scrubber.data(value))``, without the copy when nothing needs scrubbing."""
    try:
        return scrubber.to_json(value)
    except (TypeError, ValueError, RecursionError):
        return _json(scrubber.data(value))


_SQLITE_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's SQLite DATETIME format


def _sqlite_stamp(value: datetime) -> str:
    """What ``UTCDateTime`` binds on SQLite: naive UTC text with microseconds."""
    if value.tzinfo is None:
        raise ValueError("a stored timestamp must be timezone-aware")
    return _sqlite_text(value.astimezone(UTC))


def _sqlite_epoch_stamp(seconds: float) -> str:
    """``_sqlite_stamp(datetime.fromtimestamp(seconds, UTC))``, with the text up to the second
    cached: a run and its events mostly start within the same second."""
    # fromtimestamp's own split: modf, then the fraction's microseconds rounded half to even.
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    return f"{_sqlite_second(whole)}.{micro:06d}"


@lru_cache(maxsize=64)
def _sqlite_second(whole: float) -> str:
    return _sqlite_text(datetime.fromtimestamp(whole, UTC))[:19]


def _sqlite_text(v: datetime) -> str:
    return _SQLITE_FORMAT % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def _aware_stamp(value: datetime) -> datetime:
    """What ``UTCDateTime`` binds on PostgreSQL: the aware UTC datetime."""
    if value.tzinfo is None:
        raise ValueError("a stored timestamp must be timezone-aware")
    return value.astimezone(UTC)


def _aware_epoch_stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _json(value: Any) -> str:
    """Strict JSON text, so a stored batch never fails on one odd value.

    A batch that failed on its data would be retried forever; PostgreSQL refuses NaN and
    Infinity, and the JSON encoder refuses objects it does not know. Those become text (a
    type's name, never its ``str()``, which could hold an unscrubbed value).
    """
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_coerce(value), allow_nan=False)


def _coerce(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_key(k): _coerce(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_coerce(v) for v in value]
    return f"<{type(value).__name__}>"


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return f"<{type(key).__name__}>"
