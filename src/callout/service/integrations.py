"""The engine's ``IntegrationSource`` over the store, with caches so the call path does not hit
the database on every call.

Invalidation: writes made through this process (``forget_*``) take effect at once; changes made
by other replicas are seen within ``ttl_s`` — after it, a spec's status and a connection's
revision are re-read (one cheap query), and a changed connection is reloaded and decrypted.
Compiled specs are cached by content hash for good: published content never changes.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Generic, TypeVar

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
        self, specs: SpecStore, connections: ConnectionStore, *, ttl_s: float = 5.0
    ) -> None:
        self._specs = specs
        self._connections = connections
        self._ttl = ttl_s
        self._compiled: dict[str, CompiledSpec] = {}
        self._spec_cache: dict[tuple[str, str, int], _Cached[ResolvedSpec]] = {}
        self._conn_cache: dict[tuple[str, str], _Cached[ResolvedConnection]] = {}

    def compiled(self, published: PublishedSpec) -> CompiledSpec:
        """The compiled form of a published version (compiled once per content)."""
        found = self._compiled.get(published.content_hash)
        if found is None:
            found = self._compiled[published.content_hash] = compile_spec(published.document)
        return found

    async def spec(self, org_id: str | None, slug: str, version: int) -> ResolvedSpec:
        key = (org_id or "", slug, version)
        cached = self._spec_cache.get(key)
        if cached is not None and cached.fresh_until > time.monotonic():
            resolved = cached.value
        else:
            published = await self._specs.get(org_id, slug, version)
            if published is None:
                newest = await self._specs.get(org_id, slug)
                raise spec_error(
                    "unknown_version" if newest else "unknown_integration", slug, version
                )
            status: SpecStatus = published.status  # type: ignore[assignment]  # the store's three statuses
            resolved = ResolvedSpec(self.compiled(published), published.version, status)
            self._spec_cache[key] = _Cached(resolved, time.monotonic() + self._ttl)
        if resolved.status == "retired":
            raise spec_error("retired_version", slug, version)
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
        now = time.monotonic()
        if cached is not None:
            if cached.fresh_until > now:
                return cached.value
            revision = await self._connections.revision(org_id, connection_id)
            if revision == cached.value.revision:
                cached.fresh_until = now + self._ttl
                return cached.value
        loaded = await self._load(org_id, connection_id)
        registration = ExitStack()
        registration.enter_context(register_secrets(loaded.secrets.values()))
        if cached is not None:
            cached.release()
        self._conn_cache[key] = _Cached(loaded, now + self._ttl, registration)
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
        for key in [k for k in self._conn_cache if k[1] == connection_id]:
            self._conn_cache.pop(key).release()

    def forget_spec(self, slug: str) -> None:
        """Drop a spec's versions from the cache (a status changed in this process)."""
        for key in [k for k in self._spec_cache if k[1] == slug]:
            del self._spec_cache[key]
