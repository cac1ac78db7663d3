"""Where the engine gets saved integrations and connections: a protocol, and an in-memory one.

The engine never touches a database: the service layer implements ``IntegrationSource`` over the
store (with caching); an embedding host or a test can use ``InMemoryIntegrations``. Every
lookup failure is an ``InvalidError`` whose code and message say which pre-flight check failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from callout.errors import InvalidError
from callout.integration import CompiledSpec, compile_spec
from callout.scrub import Scrubber

__all__ = [
    "InMemoryIntegrations",
    "IntegrationSource",
    "ResolvedConnection",
    "ResolvedSpec",
    "connection_error",
    "spec_error",
]

SpecStatus = Literal["active", "deprecated", "retired"]


@dataclass(frozen=True, slots=True)
class ResolvedSpec:
    """A published spec version as the engine runs it."""

    compiled: CompiledSpec
    version: int
    status: SpecStatus = "active"


@dataclass(frozen=True, slots=True)
class ResolvedConnection:
    """One org's connection, with its secrets decrypted (kept only in memory, never logged)."""

    id: str
    org_id: str | None
    integration_slug: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)
    revision: int = 0
    #: Removes this connection's secrets from anything shown; built once per revision.
    scrubber: Scrubber = field(repr=False, default_factory=Scrubber)
    #: allowedOrigins rendered for this connection, per spec content hash (filled lazily).
    origins: dict[str, frozenset[str]] = field(repr=False, default_factory=dict, compare=False)
    #: What the engine derives once per (spec content hash, operation) for this revision: the
    #: rendered auth, the scrubber for it (filled lazily by the integration mode).
    derived: dict[tuple[str, str], Any] = field(repr=False, default_factory=dict, compare=False)

    def allowed_origins(self, spec: CompiledSpec) -> frozenset[str]:
        """Where this connection's secrets may go under ``spec`` (rendered once, then cached)."""
        found = self.origins.get(spec.content_hash)
        if found is None:
            found = self.origins[spec.content_hash] = spec.render_allowed_origins(self.config)
        return found


class IntegrationSource(Protocol):
    """Resolves what an integration-mode node pins, for one org."""

    async def spec(self, org_id: str | None, slug: str, version: int) -> ResolvedSpec:
        """The spec version, or ``InvalidError`` (unknown integration or version, retired)."""
        ...

    async def connection(self, org_id: str | None, connection_id: str) -> ResolvedConnection:
        """The org's connection, or ``InvalidError`` (missing, another org's, deleted)."""
        ...


def spec_error(code: str, slug: str, version: int | None = None) -> InvalidError:
    """The pre-flight error for a spec that cannot be used, with a message saying which."""
    label = f"integration '{slug}'" + (f" version {version}" if version is not None else "")
    messages = {
        "unknown_integration": f"{label} is not published for this org; publish it or fix "
        "integrationSlug",
        "unknown_version": f"{label} does not exist; pin a published version",
        "retired_version": f"{label} is retired and can no longer run; pin a newer version",
    }
    return InvalidError(messages[code], code=code, field="integrationVersion")


def connection_error(code: str, connection_id: str, detail: str = "") -> InvalidError:
    """The pre-flight error for a connection that cannot be used, with a message saying which."""
    messages = {
        "connection_missing": f"connection '{connection_id}' does not exist; pick one of "
        "this org's connections",
        "connection_other_org": f"connection '{connection_id}' belongs to another org; a flow "
        "can only use its own org's connections",
        "connection_deleted": f"connection '{connection_id}' was deleted; pick another connection",
        "connection_wrong_integration": f"connection '{connection_id}' is for {detail}; pick "
        "a connection of the pinned integration",
    }
    return InvalidError(messages[code], code=code, field="connectionId")


class InMemoryIntegrations:
    """An ``IntegrationSource`` held in memory: for embedding without a database, and tests."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], ResolvedSpec] = {}
        self._owners: dict[str, str | None] = {}
        self._connections: dict[str, ResolvedConnection] = {}
        self._deleted: set[str] = set()

    def add_spec(
        self,
        document: Mapping[str, Any],
        version: int,
        *,
        owner_org: str | None = None,
        status: SpecStatus = "active",
    ) -> ResolvedSpec:
        compiled = compile_spec(document)
        resolved = ResolvedSpec(compiled, version, status)
        self._specs[(compiled.slug, version)] = resolved
        self._owners[compiled.slug] = owner_org
        return resolved

    def add_connection(
        self,
        connection_id: str,
        org_id: str | None,
        integration_slug: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
        *,
        revision: int = 0,
    ) -> ResolvedConnection:
        connection = ResolvedConnection(
            connection_id,
            org_id,
            integration_slug,
            dict(config),
            dict(secrets),
            revision,
            Scrubber(secrets.values()),
        )
        self._connections[connection_id] = connection
        self._deleted.discard(connection_id)
        return connection

    def delete_connection(self, connection_id: str) -> None:
        self._connections.pop(connection_id, None)
        self._deleted.add(connection_id)

    async def spec(self, org_id: str | None, slug: str, version: int) -> ResolvedSpec:
        owner = self._owners.get(slug, "")
        if slug not in self._owners or owner not in (None, org_id):
            raise spec_error("unknown_integration", slug)
        resolved = self._specs.get((slug, version))
        if resolved is None:
            raise spec_error("unknown_version", slug, version)
        if resolved.status == "retired":
            raise spec_error("retired_version", slug, version)
        return resolved

    async def connection(self, org_id: str | None, connection_id: str) -> ResolvedConnection:
        if connection_id in self._deleted:
            raise connection_error("connection_deleted", connection_id)
        connection = self._connections.get(connection_id)
        if connection is None:
            raise connection_error("connection_missing", connection_id)
        if connection.org_id != org_id:
            raise connection_error("connection_other_org", connection_id)
        return connection
