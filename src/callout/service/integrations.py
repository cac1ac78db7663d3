"""The engine's ``IntegrationSource`` over the store, with caches so the call path does not hit
the database on every call.

Invalidation: writes made through this process (``forget_*``) take effect at once; changes made
by other replicas are seen within ``ttl_s`` — after it, a spec's status and a connection's
revision are re-read (one cheap query), and a changed connection is reloaded and decrypted.
Compiled specs are cached by content hash for good: published content never changes.

One re-read per key at a time: when an entry goes stale under load, every call that finds it
stale waits on the same query instead of each sending its own (a hundred identical queries at
each expiry, measured at 64 concurrent calls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from callout.engine.sources import (
    ResolvedConnection,
    ResolvedSpec,
    SpecStatus,
    connection_error,
    spec_error,
)
from callout.errors import InvalidError
from callout.integration import CompiledSpec, compile_spec
from callout.scrub import Scrubber, register_secrets
from callout.store.connections import ConnectionStore
from callout.store.specs import PublishedSpec, SpecStore

__all__ = ["StoreIntegrationSource"]


T = TypeVar("T")
#: ("spec", (org, slug, version)) or ("connection", (org, connection id)).
_ReadKey = tuple[str, tuple[str | int, ...]]


@dataclass(slots=True)
class _Cached(Generic[T]):
    value: T
    fresh_until: float
    #: Keeps a connection's secrets registered for log scrubbing while it is cached.
    registration: ExitStack | None = None

    def release(self) -> None:
        if self.registration is not None:
            self.registration.close()


class StoreIntegrationSource:
    """Specs and decrypted connections for integration-mode nodes, cached per org."""

    def __init__(
        self,
        specs: SpecStore,
        connections: ConnectionStore,
        *,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._specs = specs
        self._connections = connections
        self._ttl = ttl_s
        self._clock = clock
        self._compiled: dict[str, CompiledSpec] = {}
        self._spec_cache: dict[tuple[str, str, int], _Cached[ResolvedSpec]] = {}
        self._conn_cache: dict[tuple[str, str], _Cached[ResolvedConnection]] = {}
        self._reading: dict[_ReadKey, asyncio.Future[object]] = {}
        #: Bumped by every ``forget_*``: a read that started before it must not cache its result.
        self._generation = 0

    async def _once(self, key: _ReadKey, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, shared by every caller asking for ``key`` while it runs. Shielded: one
        caller's cancellation (its own deadline) does not fail the others' read."""
        pending = self._reading.get(key)
        if pending is None:
            pending = self._reading[key] = asyncio.ensure_future(read())
            pending.add_done_callback(lambda done: self._drop_reading(key, done))
        return await asyncio.shield(pending)  # type: ignore[arg-type]  # read() returns T

    def compiled(self, published: PublishedSpec) -> CompiledSpec:
        """The compiled form of a published version (compiled once per content)."""
        found = self._compiled.get(published.content_hash)
        if found is None:
            found = self._compiled[published.content_hash] = compile_spec(published.document)
        return found

    def _drop_reading(self, key: _ReadKey, done: asyncio.Future[object]) -> None:
        if self._reading.get(key) is done:
            del self._reading[key]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have left on its own deadline

    async def spec(self, org_id: str | None, slug: str, version: int) -> ResolvedSpec:
        key = (org_id or "", slug, version)
        cached = self._spec_cache.get(key)
        if cached is not None and cached.fresh_until > self._clock():
            resolved = cached.value
        else:
            resolved = await self._once(("spec", key), lambda: self._read_spec(key))
        if resolved.status == "retired":
            raise spec_error("retired_version", slug, version)
        return resolved

    async def _read_spec(self, key: tuple[str, str, int]) -> ResolvedSpec:
        org, slug, version = key
        org_id = org or None
        generation = self._generation
        cached = self._spec_cache.get(key)
        if cached is not None:
            # A published version's content never changes: only its status is re-read, and an
            # unchanged one keeps the same object, so nodes keep what they bound to it.
            current = await self._specs.status(org_id, slug, version)
            if current == cached.value.status:
                cached.fresh_until = self._clock() + self._ttl
                return cached.value
            if current is not None:
                changed = ResolvedSpec(cached.value.compiled, version, cast(SpecStatus, current))
                if generation == self._generation:
                    self._spec_cache[key] = _Cached(changed, self._clock() + self._ttl)
                return changed
        published = await self._specs.get(org_id, slug, version)
        if published is None:
            newest = await self._specs.get(org_id, slug)
            raise spec_error("unknown_version" if newest else "unknown_integration", slug, version)
        status: SpecStatus = published.status  # type: ignore[assignment]  # the store's three statuses
        resolved = ResolvedSpec(self.compiled(published), published.version, status)
        if generation == self._generation:
            self._spec_cache[key] = _Cached(resolved, self._clock() + self._ttl)
        return resolved

    async def connection(self, org_id: str | None, connection_id: str) -> ResolvedConnection:
        if org_id is None:
            raise InvalidError(
                "saved connections belong to an org: run the flow with an org (callout run --org)",
                code="connection_missing",
                field="connectionId",
            )
        key = (org_id, connection_id)
        cached = self._conn_cache.get(key)
        if cached is not None and cached.fresh_until > self._clock():
            return cached.value
        return await self._once(("connection", key), lambda: self._read_connection(key))

    async def _read_connection(self, key: tuple[str, str]) -> ResolvedConnection:
        org_id, connection_id = key
        generation = self._generation
        cached = self._conn_cache.get(key)
        if cached is not None:
            revision = await self._connections.revision(org_id, connection_id)
            if revision == cached.value.revision:
                cached.fresh_until = self._clock() + self._ttl
                return cached.value
        loaded = await self._load(org_id, connection_id)
        if generation != self._generation:
            return loaded  # changed in this process meanwhile: used once, not cached
        registration = ExitStack()
        registration.enter_context(register_secrets(loaded.secrets.values()))
        stale = self._conn_cache.get(key)
        if stale is not None:
            stale.release()
        self._conn_cache[key] = _Cached(loaded, self._clock() + self._ttl, registration)
        return loaded

    async def _load(self, org_id: str, connection_id: str) -> ResolvedConnection:
        where = await self._connections.locate(org_id, connection_id)
        if where != "ok":
            raise connection_error(f"connection_{where}", connection_id)
        record = await self._connections.get(org_id, connection_id)
        if record is None:  # deleted between the two reads
            raise connection_error("connection_deleted", connection_id)
        secrets = await self._connections.decrypt_secrets(org_id, connection_id)
        return ResolvedConnection(
            record.id,
            record.org_id,
            record.integration_slug,
            record.config,
            secrets,
            record.revision,
            Scrubber(secrets.values()),
        )

    def forget_connection(self, connection_id: str) -> None:
        """Drop a connection from the cache (it changed, or was deleted, in this process)."""
        self._forget_reads("connection", lambda key: key[1] == connection_id)
        for key in [k for k in self._conn_cache if k[1] == connection_id]:
            self._conn_cache.pop(key).release()

    def forget_spec(self, slug: str) -> None:
        """Drop a spec's versions from the cache (a status changed in this process)."""
        self._forget_reads("spec", lambda key: key[1] == slug)
        for key in [k for k in self._spec_cache if k[1] == slug]:
            del self._spec_cache[key]

    def _forget_reads(self, kind: str, matches: Callable[[tuple[str | int, ...]], bool]) -> None:
        """Detach reads in flight (their callers still get an answer) so the next call reads
        afresh, and stop every read in flight from caching what it found."""
        self._generation += 1
        for key in [k for k in self._reading if k[0] == kind and matches(k[1])]:
            del self._reading[key]
