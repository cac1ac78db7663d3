"""Tests for callout.store.db: URLs, engines, migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from importlib import resources
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from callout.store.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    _use_wal,
    alembic_config,
    default_database_url,
    open_database,
)
from callout.store.errors import StoreError
from callout.store.models import Base

TABLES = {
    "alembic_version",
    "api_keys",
    "audit_head",
    "audit_log",
    "connection_secrets",
    "connections",
    "flows",
    "integration_specs",
    "run_events",
    "runs",
}


def _schema_diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))


async def test_migrations_create_every_table(empty_database: Database) -> None:
    """migrate() on an empty database creates every table."""
    assert await _tables(empty_database) == set()
    await empty_database.migrate()
    assert await _tables(empty_database) == TABLES


async def test_migrated_schema_matches_the_models(empty_database: Database) -> None:
    """Alembic finds no difference between the migrated database and the models."""
    await empty_database.migrate()
    async with empty_database.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_migrate_is_idempotent(empty_database: Database) -> None:
    """Running migrate() again changes nothing and keeps the version at head."""
    for _ in range(3):
        await empty_database.migrate()
    async with empty_database.session() as s:
        versions = (await s.execute(text("SELECT version_num FROM alembic_version"))).all()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert [v for (v,) in versions] == [head]
    assert await _tables(empty_database) == TABLES


async def test_replicas_migrating_together_do_it_once(empty_database: Database) -> None:
    """Several processes migrating the same empty database at once all succeed."""
    others = [Database(str(empty_database.url)) for _ in range(3)]
    try:
        await asyncio.gather(empty_database.migrate(), *(db.migrate() for db in others))
    finally:
        for db in others:
            await db.dispose()
    assert await _tables(empty_database) == TABLES


def test_default_database_url_creates_a_private_data_dir(tmp_path: Path) -> None:
    """The default URL is a SQLite file in a data dir created 0700."""
    data_dir = tmp_path / "state" / "callout"
    url = default_database_url(data_dir)
    assert url == f"sqlite+aiosqlite:///{data_dir.resolve()}/callout.db"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


async def test_sqlite_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    """Every SQLite connection runs in WAL mode with foreign keys on and a busy timeout."""
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.session() as s:
            mode = (await s.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await s.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await s.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert (mode, fks) == ("wal", 1)
        assert busy >= 1000
        assert db.dialect == "sqlite"
    finally:
        await db.dispose()


def test_bare_urls_get_the_async_drivers() -> None:
    """sqlite:// and postgresql:// URLs use aiosqlite and asyncpg; repr hides the password."""
    assert Database("sqlite:///x.db").url.drivername == "sqlite+aiosqlite"
    pg = Database("postgresql://u:hunter2@127.0.0.1:1/db")
    assert pg.url.drivername == "postgresql+asyncpg"
    assert pg.dialect == "postgresql"
    assert "hunter2" not in repr(pg)


def test_migrations_ship_inside_the_package() -> None:
    """The Alembic env and versions are package modules, found without an alembic.ini."""
    migrations = resources.files("callout.store") / "migrations"
    assert (migrations / "env.py").is_file()
    assert (migrations / "versions" / "0001_initial.py").is_file()
    script = ScriptDirectory.from_config(alembic_config())
    shipped = sorted(p.name[:4] for p in (migrations / "versions").iterdir() if p.name[0].isdigit())
    assert sorted(r.revision for r in script.walk_revisions()) == shipped


async def test_a_nested_write_transaction_is_refused_not_deadlocked(tmp_path: Path) -> None:
    """On SQLite a write transaction opened inside another raises instead of waiting forever."""
    db = await open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.transaction():
            with pytest.raises(StoreError):
                async with db.transaction():
                    pass
        async with db.transaction() as s:  # the lock was released
            await s.execute(text("SELECT 1"))
    finally:
        await db.dispose()


def open_together(path: Path, count: int) -> tuple[list[str], list[BaseException]]:
    """``count`` connections switch a new file to WAL at the same moment: their journal modes
    afterwards, and what they raised."""
    start = threading.Barrier(count)
    modes: list[str] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            start.wait()
            _use_wal(connection.cursor())
            modes.append(connection.execute("PRAGMA journal_mode").fetchone()[0])
        except BaseException as exc:  # noqa: BLE001  -- reported by the caller's assertion
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return modes, errors


def test_connections_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    """Replicas opening a new SQLite file at the same moment: SQLite refuses all but one switch
    to WAL at once (waiting would deadlock), and each refused connection still ends in WAL
    instead of failing with "database is locked". Without the second look, about one round in
    eight here fails."""
    for round_ in range(40):
        modes, errors = open_together(tmp_path / f"r{round_}.db", 4)
        assert errors == []
        assert modes == ["wal"] * 4
