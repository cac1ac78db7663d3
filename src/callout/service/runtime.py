"""Everything a command or the REST app needs, opened once from settings: the database, the key
ring, the repositories, and an engine whose integration mode reads the store.

The program refuses to run without a master key (``MissingMasterKey``): there is no plaintext
fallback. ``initialise`` creates the data directory, a key file (mode 0600) and the schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractResolver

from callout.crypto import KeyRing, create_key_file, load_key_ring
from callout.engine.engine import Engine
from callout.engine.runner import CompiledFlow, RunResult
from callout.service.history import HistoryRecorder, RunRecorder
from callout.service.history_process import ProcessHistoryRecorder
from callout.service.integrations import StoreIntegrationSource
from callout.settings import Settings
from callout.store.audit import AuditLog
from callout.store.connections import ConnectionStore
from callout.store.db import Database, default_database_url, open_database
from callout.store.errors import StoreError
from callout.store.history import HistoryStore
from callout.store.specs import SpecStore

__all__ = [
    "KEY_FILE_NAME",
    "InitReport",
    "Runtime",
    "build_runtime",
    "initialise",
    "key_file",
    "open_runtime",
]

KEY_FILE_NAME = "master-keys.json"
#: How long an orderly shutdown waits for run history to be written.
HISTORY_CLOSE_TIMEOUT_S = 30.0


def key_file(settings: Settings) -> Path:
    """Where the master key file lives: in the data directory."""
    return settings.data_dir / KEY_FILE_NAME


def database_url(settings: Settings) -> str:
    """PostgreSQL when ``CALLOUT_DATABASE_URL`` says so, else SQLite in the data directory."""
    return settings.database_url or default_database_url(settings.data_dir)


def _env_keys(settings: Settings) -> str | None:
    return settings.master_keys.get_secret_value() if settings.master_keys else None


@dataclass(frozen=True, slots=True)
class InitReport:
    """What ``initialise`` did."""

    data_dir: Path
    key_file: Path | None
    created_key: bool
    database: str


async def initialise(settings: Settings) -> InitReport:
    """Create the data directory, a master key file (unless keys come from the environment)
    and the database schema. Safe to run again: it creates only what is missing."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path: Path | None = key_file(settings)
    created = False
    if _env_keys(settings):
        path = None
    elif path is not None and not path.exists():
        create_key_file(path)
        created = True
    url = database_url(settings)
    db = await open_database(url)
    await db.dispose()
    shown = url if settings.database_url is None else url.split("@")[-1]  # never a password
    return InitReport(settings.data_dir, path, created, shown)


@dataclass(slots=True)
class Runtime:
    """Opened stores and engine; close with ``aclose``."""

    settings: Settings
    db: Database
    ring: KeyRing
    specs: SpecStore
    connections: ConnectionStore
    audit: AuditLog
    source: StoreIntegrationSource
    engine: Engine
    history: HistoryStore
    recorder: RunRecorder

    @property
    def key_file(self) -> Path | None:
        """The key file, or None when keys come from ``CALLOUT_MASTER_KEYS``."""
        return None if _env_keys(self.settings) else key_file(self.settings)

    def run_and_record(
        self, flow: CompiledFlow, *, org_id: str | None = None, **scopes: Any
    ) -> Coroutine[Any, Any, RunResult]:
        """Run a flow and hand its history to the recorder (written off the call path); await
        it. The engine's own coroutine: a coroutine of this one's around it cost ~2 us a run
        (bench/RESULTS.md, fifteenth pass)."""
        return self.engine.run_flow(flow, org_id=org_id, history=self.recorder, **scopes)

    async def aclose(self) -> None:
        """Flush history (an orderly shutdown loses none), then close the engine and database.

        The flush is bounded: with the database down, the recorder would retry for ever, and a
        shutdown must end; the runs left unwritten are counted in the log."""
        try:
            async with asyncio.timeout(HISTORY_CLOSE_TIMEOUT_S):
                await self.recorder.close()
        except TimeoutError:
            pass  # the recorder logged how many runs it could not write
        await self.engine.aclose()
        await self.db.dispose()


async def open_runtime(settings: Settings, *, resolver: AbstractResolver | None = None) -> Runtime:
    """Load the key ring (refusing to run without one), migrate and open the database, and
    build an engine whose integration mode reads specs and connections from the store."""
    ring = load_key_ring(_env_keys(settings), key_file(settings))
    db = await open_database(database_url(settings))
    rt = build_runtime(settings, db, ring, resolver=resolver)
    await rt.recorder.start()
    return rt


def build_runtime(
    settings: Settings, db: Database, ring: KeyRing, *, resolver: AbstractResolver | None = None
) -> Runtime:
    """A runtime over an open, migrated database (tests pass theirs); its history recorder is
    not started yet (``await rt.recorder.start()``)."""
    specs = SpecStore(db, ring)
    connections = ConnectionStore(db, ring)
    source = StoreIntegrationSource(specs, connections, ttl_s=settings.cache_ttl_ms / 1000)
    engine = Engine(settings.engine_config(), resolver=resolver, integrations=source)
    history = HistoryStore(db)
    recorder: RunRecorder
    if settings.history_writer == "process":
        if db.in_memory:
            raise StoreError(
                "CALLOUT_HISTORY_WRITER=process needs a database another process can open: "
                "use a SQLite file or PostgreSQL, or set CALLOUT_HISTORY_WRITER=inline",
                code="invalid_settings",
                field="history_writer",
            )
        recorder = ProcessHistoryRecorder(
            db.url.render_as_string(hide_password=False), niceness=settings.history_writer_nice
        )
    else:
        recorder = HistoryRecorder(history)
    return Runtime(
        settings,
        db,
        ring,
        specs,
        connections,
        AuditLog(db, ring),
        source,
        engine,
        history,
        recorder,
    )
