"""Fixtures for every test folder: a throwaway PostgreSQL server and a migrated ``database``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from callout.store.db import Database, open_database
from tests.pg import PostgresServer, PostgresUnavailable, start_postgres

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, stopped at its end even when tests fail."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


async def _migrated_template(server: PostgresServer) -> str:
    # Migrating once and copying the result (CREATE DATABASE ... TEMPLATE) halves the setup time
    # of every PostgreSQL test; the migration tests use `empty_database` to run it for real.
    if server.template is None:
        name = await server.create_database()
        db = await open_database(server.url(name))
        await db.dispose()
        server.template = name
    return server.template


@asynccontextmanager
async def _database(
    request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'callout.db'}"
        db = await open_database(url) if migrated else Database(url)
        try:
            yield db
        finally:
            await db.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = await _migrated_template(server) if migrated else None
    name = await server.create_database(template)
    try:
        db = Database(server.url(name))
        try:
            yield db
        finally:
            await db.dispose()
    finally:
        await server.drop_database(name)


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL database per test."""
    async with _database(request, tmp_path, migrated=True) as db:
        yield db


@pytest.fixture(params=BACKENDS)
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database with no tables yet (migrations not run), on each backend."""
    async with _database(request, tmp_path, migrated=False) as db:
        yield db
