"""Connections: an org's config and sealed secrets for one integration, scoped by org.

Threat: one org reading or using another org's credentials, and secrets leaking from the
database or the audit log. Every query here carries the caller's org id, so a caller cannot
forget it; ``locate`` is the one lookup across orgs and answers a single word. Secrets are sealed
with the key ring (AES-256-GCM bound to org, connection, field and key id) before they reach the
database, are write-only (records and audit entries carry ``{"set": true, "updatedAt": ...}``,
never a value or a ciphertext), and are deleted, not kept, when the connection is deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callout.crypto import KeyRing, Sealed, SecretBinding
from callout.store.audit import AuditLog
from callout.store.db import Database
from callout.store.errors import NotFound, StoreConflict, StoreError
from callout.store.models import Connection, ConnectionSecret, new_connection_id, utcnow

__all__ = ["ConnectionRecord", "ConnectionStore", "Location"]

Location = Literal["ok", "missing", "other_org", "deleted"]
SecretsMeta = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ConnectionRecord:
    """A connection as callers see it: ``secrets`` maps each set field to metadata, no value."""

    id: str
    org_id: str
    integration_slug: str
    name: str
    config: dict[str, Any]
    revision: int
    created_at: datetime
    updated_at: datetime
    secrets: SecretsMeta


def _record(row: Connection, secrets: SecretsMeta) -> ConnectionRecord:
    return ConnectionRecord(
        id=row.id,
        org_id=row.org_id,
        integration_slug=row.integration_slug,
        name=row.name,
        config=dict(row.config),
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secrets=secrets,
    )


def _meta(rows: Iterable[ConnectionSecret]) -> SecretsMeta:
    return {
        r.field: {"set": True, "updatedAt": r.updated_at.isoformat()}
        for r in sorted(rows, key=lambda r: r.field)
    }


def _audit_view(record: ConnectionRecord) -> dict[str, Any]:
    return {
        "integrationSlug": record.integration_slug,
        "name": record.name,
        "config": record.config,
        "revision": record.revision,
        "secrets": record.secrets,
    }


def _check_fields(fields: Iterable[str]) -> None:
    for name in fields:
        if not isinstance(name, str) or not name:
            raise StoreError("a secret field name must be a non-empty string", code="invalid")


class ConnectionStore:
    """Create, read, update and delete connections; seal and open their secrets."""

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self.ring = ring

    @property
    def ring(self) -> KeyRing:
        """The key ring; replace it after a rotation so new seals (and the audit log's signed
        head) use the new primary."""
        return self._ring

    @ring.setter
    def ring(self, ring: KeyRing) -> None:
        self._ring = ring
        self._audit = AuditLog(self._db, ring)

    def _live(self, org_id: str, connection_id: str) -> Select[Connection]:
        return select(Connection).where(
            Connection.id == connection_id,
            Connection.org_id == org_id,
            Connection.deleted_at.is_(None),
        )

    async def _secrets(self, s: AsyncSession, connection_id: str) -> list[ConnectionSecret]:
        query = select(ConnectionSecret).where(ConnectionSecret.connection_id == connection_id)
        return list(await s.scalars(query))

    async def _check_name(self, s: AsyncSession, org_id: str, name: str) -> None:
        taken = await s.scalar(
            select(Connection.id).where(
                Connection.org_id == org_id,
                Connection.name == name,
                Connection.deleted_at.is_(None),
            )
        )
        if taken is not None:
            raise StoreConflict(
                f"this org already has a connection named {name!r}; choose another name",
                code="name_taken",
                field="name",
            )

    async def _raise_if_name_taken(self, org_id: str, name: str) -> None:
        """After a UNIQUE violation: a concurrent writer took the name between check and write."""
        async with self._db.session() as s:
            await self._check_name(s, org_id, name)

    def _seal(self, org_id: str, connection_id: str, field: str, value: str) -> Sealed:
        if not isinstance(value, str):
            raise StoreError(f"secret {field!r} must be a string", code="invalid", field=field)
        return self.ring.seal(value, SecretBinding(org_id, connection_id, field))

    def _sealed_row(
        self, org_id: str, connection_id: str, field: str, value: str, at: datetime
    ) -> ConnectionSecret:
        sealed = self._seal(org_id, connection_id, field, value)
        return ConnectionSecret(
            connection_id=connection_id,
            field=field,
            sealed=sealed.to_text(),
            key_id=sealed.key_id,
            updated_at=at,
        )

    async def create(
        self,
        org_id: str,
        integration_slug: str,
        name: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
        actor: str,
    ) -> ConnectionRecord:
        """A new connection with its secrets sealed; the name must be free in the org."""
        _check_fields(secrets)
        connection_id, now = new_connection_id(), utcnow()
        try:
            async with self._db.transaction() as s:
                await self._check_name(s, org_id, name)
                row = Connection(
                    id=connection_id,
                    org_id=org_id,
                    integration_slug=integration_slug,
                    name=name,
                    config=dict(config),
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                await s.flush()  # the secrets' foreign key needs the row
                sealed = [
                    self._sealed_row(org_id, connection_id, field, value, now)
                    for field, value in secrets.items()
                ]
                s.add_all(sealed)
                await s.flush()
                record = _record(row, _meta(sealed))
                await self._append(s, actor, record, "connection.create", None, _audit_view(record))
        except IntegrityError:
            await self._raise_if_name_taken(org_id, name)
            raise
        return record

    async def _append(
        self,
        s: AsyncSession,
        actor: str,
        record: ConnectionRecord,
        action: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        await self._audit.append(
            s,
            actor=actor,
            org_id=record.org_id,
            action=action,
            target_type="connection",
            target_id=record.id,
            before=before,
            after=after,
        )

    async def get(self, org_id: str, connection_id: str) -> ConnectionRecord | None:
        """This org's live connection with that id, else None (another org's is None too)."""
        async with self._db.session() as s:
            row = await s.scalar(self._live(org_id, connection_id))
            if row is None:
                return None
            return _record(row, _meta(await self._secrets(s, connection_id)))

    async def locate(self, org_id: str, connection_id: str) -> Location:
        """Why a connection id would not resolve for ``org_id``, in one word ("ok" if it does)."""
        query = select(Connection.org_id, Connection.deleted_at).where(
            Connection.id == connection_id
        )
        async with self._db.session() as s:
            found = (await s.execute(query)).first()
        if found is None:
            return "missing"
        if found[0] != org_id:
            return "other_org"  # deleted or not: another org's state is not ours to tell
        return "deleted" if found[1] is not None else "ok"

    async def list(
        self, org_id: str, integration_slug: str | None = None
    ) -> builtins.list[ConnectionRecord]:
        """The org's live connections (of one integration when given), by name."""
        query = select(Connection).where(
            Connection.org_id == org_id, Connection.deleted_at.is_(None)
        )
        if integration_slug is not None:
            query = query.where(Connection.integration_slug == integration_slug)
        async with self._db.session() as s:
            rows = list(await s.scalars(query.order_by(Connection.name, Connection.id)))
            by_id: dict[str, list[ConnectionSecret]] = {row.id: [] for row in rows}
            if by_id:
                secrets = await s.scalars(
                    select(ConnectionSecret).where(ConnectionSecret.connection_id.in_(by_id))
                )
                for secret in secrets:
                    by_id[secret.connection_id].append(secret)
        return [_record(row, _meta(by_id[row.id])) for row in rows]

    async def update(
        self,
        org_id: str,
        connection_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        set_secrets: Mapping[str, str] | None = None,
        unset_secrets: Iterable[str] = (),
        actor: str,
    ) -> ConnectionRecord:
        """Change the name, replace the config, set or unset secrets; bumps the revision."""
        set_secrets = dict(set_secrets or {})
        unset = set(unset_secrets)
        _check_fields([*set_secrets, *unset])
        if both := sorted(unset & set_secrets.keys()):
            raise StoreError(f"secret {both[0]!r} is both set and unset", code="invalid")
        try:
            async with self._db.transaction() as s:
                row = await s.scalar(self._live(org_id, connection_id).with_for_update())
                if row is None:
                    raise NotFound(f"no connection {connection_id!r} in this org")
                current = {r.field: r for r in await self._secrets(s, connection_id)}
                if name is None and config is None and not set_secrets and not unset:
                    return _record(row, _meta(current.values()))
                before = _audit_view(_record(row, _meta(current.values())))
                if name is not None and name != row.name:
                    await self._check_name(s, org_id, name)
                    row.name = name
                if config is not None:
                    row.config = dict(config)
                now = utcnow()
                for field in unset & current.keys():
                    await s.delete(current.pop(field))
                for field, value in set_secrets.items():
                    secret = current.get(field)
                    if secret is None:
                        current[field] = self._sealed_row(org_id, connection_id, field, value, now)
                        s.add(current[field])
                        continue
                    sealed = self._seal(org_id, connection_id, field, value)
                    secret.sealed, secret.key_id = sealed.to_text(), sealed.key_id
                    secret.updated_at = now
                row.revision += 1
                row.updated_at = now
                await s.flush()
                record = _record(row, _meta(current.values()))
                await self._append(
                    s, actor, record, "connection.update", before, _audit_view(record)
                )
        except IntegrityError:
            if name is not None:
                await self._raise_if_name_taken(org_id, name)
            raise
        return record

    async def delete(self, org_id: str, connection_id: str, actor: str) -> None:
        """Soft-delete the connection and destroy its sealed secrets."""
        async with self._db.transaction() as s:
            row = await s.scalar(self._live(org_id, connection_id).with_for_update())
            if row is None:
                raise NotFound(f"no connection {connection_id!r} in this org")
            record = _record(row, _meta(await self._secrets(s, connection_id)))
            await s.execute(
                delete(ConnectionSecret).where(ConnectionSecret.connection_id == connection_id)
            )
            row.deleted_at = row.updated_at = utcnow()
            row.revision += 1
            await s.flush()
            await self._append(s, actor, record, "connection.delete", _audit_view(record), None)

    async def decrypt_secrets(self, org_id: str, connection_id: str) -> dict[str, str]:
        """Every secret of this org's live connection, opened; raises ``NotFound`` otherwise."""
        query = (
            select(Connection.id, ConnectionSecret.field, ConnectionSecret.sealed)
            .outerjoin(ConnectionSecret, ConnectionSecret.connection_id == Connection.id)
            .where(
                Connection.id == connection_id,
                Connection.org_id == org_id,
                Connection.deleted_at.is_(None),
            )
        )
        async with self._db.session() as s:
            rows = (await s.execute(query)).all()
        if not rows:
            raise NotFound(f"no connection {connection_id!r} in this org")
        return {
            field: self.ring.open(
                Sealed.from_text(text), SecretBinding(org_id, connection_id, field)
            )
            for _, field, text in rows
            if field is not None
        }

    async def revision(self, org_id: str, connection_id: str) -> int | None:
        """The live connection's revision (cheap; for cache invalidation), else None."""
        query = select(Connection.revision).where(
            Connection.id == connection_id,
            Connection.org_id == org_id,
            Connection.deleted_at.is_(None),
        )
        async with self._db.session() as s:
            value: int | None = await s.scalar(query)
        return value
