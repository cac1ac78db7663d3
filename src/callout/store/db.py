"""The database handle: one async engine on SQLite or PostgreSQL, sessions, locks, migrations.

Two kinds of session. ``session()`` is for reads. ``transaction()`` is for writes: on SQLite it
opens with ``BEGIN IMMEDIATE``, so writers queue on the database lock (up to
``SQLITE_BUSY_TIMEOUT_MS``) at the start instead of failing half-way when a read lock cannot be
upgraded; on PostgreSQL it is an ordinary READ COMMITTED transaction and the repositories take
``lock()`` (a transaction-scoped advisory lock) where a read decides a write.

The schema is managed by Alembic; the environment and the versions ship inside the package
(``callout/store/migrations``), so ``migrate()`` works from an installed wheel with no
``alembic.ini``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from callout.store.errors import StoreError

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "Database",
    "Dialect",
    "default_database_url",
    "open_database",
]

Dialect = Literal["sqlite", "postgresql"]

#: How long a SQLite writer waits for the database lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

_SQLITE_BEGIN = "callout_sqlite_begin"  # execution option read by the SQLite "begin" hook
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_MIGRATE_LOCK = "callout:migrate"


def _strict_json(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


def default_database_url(data_dir: Path) -> str:
    """The one-box default, ``sqlite+aiosqlite:///<data_dir>/callout.db``; makes data_dir 0700."""
    if not data_dir.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)  # mkdir's mode is filtered by the umask
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'callout.db'}"


def _normalise(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # Heroku-style URLs
        backend = "postgresql"
    if backend not in _DRIVERS:
        raise StoreError(
            f"unsupported database {backend!r}: use sqlite+aiosqlite:///path/callout.db or "
            "postgresql+asyncpg://user@host/db",
            code="unsupported_database",
        )
    if "+" not in parsed.drivername:  # a bare scheme means the async driver we ship with
        parsed = parsed.set(drivername=_DRIVERS[backend])
    return parsed


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Database:
    """One database: the async engine, read sessions, write transactions and migrations."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = _normalise(url)
        backend = self.url.get_backend_name()
        self.dialect: Dialect = "sqlite" if backend == "sqlite" else "postgresql"
        if self.dialect == "postgresql":
            engine_options.setdefault("pool_pre_ping", True)
        # Strict JSON (no NaN, which PostgreSQL refuses) on both backends, so a value that one
        # database would refuse is refused the same way by the other.
        engine_options.setdefault("json_serializer", _strict_json)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options)
        self._write_lock: asyncio.Lock | None = None
        self._writer: asyncio.Task[Any] | None = None
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine)
            self._write_lock = asyncio.Lock()
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writes = async_sessionmaker(
            self.engine, expire_on_commit=False, execution_options={_SQLITE_BEGIN: "IMMEDIATE"}
        )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def session(self) -> AsyncSession:
        """A session for reads: ``async with db.session() as s: ...``."""
        return self._reads()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on exit and rolled back on an exception."""
        if self._write_lock is None:
            async with self._writes() as session, session.begin():
                yield session
            return
        # SQLite has one writer at a time. Queue this process's writers here, in order, rather
        # than in SQLite's busy handler, which polls with sleeps of up to 100 ms; the busy
        # timeout still arbitrates between processes (a server and a CLI command).
        task = asyncio.current_task()
        if self._writer is not None and self._writer is task:
            raise StoreError("a write transaction cannot be opened inside another one")
        async with self._write_lock:
            self._writer = task
            try:
                async with self._writes() as session, session.begin():
                    yield session
            finally:
                self._writer = None

    async def lock(self, session: AsyncSession, name: str) -> None:
        """Serialise writers on ``name`` until the transaction ends.

        PostgreSQL takes ``pg_advisory_xact_lock``; on SQLite a ``transaction()`` already holds
        the database's one write lock, so there is nothing more to take.
        """
        if self.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})

    async def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic ``upgrade head``); idempotent.

        Replicas starting together serialise on an advisory lock (PostgreSQL) or the write lock
        (SQLite), so only one of them applies a version and the others find it applied.
        """
        engine = self.engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        async with engine.begin() as conn:
            if self.dialect == "postgresql":
                key = lock_key(_MIGRATE_LOCK)
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            await conn.run_sync(_upgrade_head)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: only this process's pool can reach it."""
        return self.dialect == "sqlite" and self.url.database in (None, "", ":memory:")

    def blocking_sqlite(self) -> sqlite3.Connection | None:
        """A plain ``sqlite3`` connection to this SQLite file, set up as the pooled ones are
        (``BEGIN`` is the caller's to emit); None on PostgreSQL or an in-memory database.

        Its calls block the thread that makes them: only for a process whose event loop has
        nothing else to do meanwhile (the history writer process). It saves aiosqlite's hand-off
        of every statement to a thread and back, nine round trips a transaction.
        """
        path = self.url.database
        if self.dialect != "sqlite" or self.in_memory or path is None:
            return None
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            _set_up_sqlite(connection)
        except BaseException:
            connection.close()
            raise
        return connection


async def open_database(url: str, **engine_options: Any) -> Database:
    """A ``Database`` on ``url`` with its schema migrated to the newest version."""
    db = Database(url, **engine_options)
    try:
        await db.migrate()
    except BaseException:
        await db.dispose()
        raise
    return db


def alembic_config() -> Config:
    """The Alembic configuration, built in code from the package's own migrations."""
    config = Config()
    config.set_main_option("script_location", "callout.store:migrations")
    return config


def _upgrade_head(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


#: Looks at the journal mode after a refused switch to WAL before giving up.
_WAL_ATTEMPTS = 5


def _use_wal(cursor: Any) -> None:
    """Switch the database file to WAL (it stays so: the mode is kept in the file).

    Connections opening a new file at the same moment (replicas starting together) each hold a
    read lock when they ask to convert it; SQLite refuses all but one at once, without the busy
    timeout, since waiting would deadlock. The one it lets through converts the file as soon as
    the refused statement lets go of its lock, so a refused connection looks again (a read,
    which does wait) and finds WAL.
    """
    for attempt in range(1, _WAL_ATTEMPTS + 1):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS:
                raise
        else:
            return
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return


def _set_up_sqlite(connection: Any) -> None:
    """Every SQLite connection's settings, through aiosqlite or not (``blocking_sqlite``)."""
    # Take BEGIN away from sqlite3's legacy transaction control (it skips BEGIN before a
    # SELECT, so reads were not repeatable) and emit it ourselves (_on_begin).
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _use_wal(cursor)
        # The usual pairing with WAL: no corruption and no loss on a process crash; only an
        # OS crash or power cut can roll back the newest transactions. Saves an fsync a commit.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _set_up_sqlite(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
