"""Published integration specs: immutable numbered versions, owned by the catalog or one org.

A slug belongs to one owner: the platform catalog (``owner_org`` None) or one org. Versions of a
slug are numbered 1, 2, 3, ... with no gap and no duplicate even under concurrent publishes:
writers of one slug serialise on ``Database.lock`` (PostgreSQL) or the write lock (SQLite), and
``UNIQUE(slug, version)`` / ``UNIQUE(slug, content_hash)`` back that up; a publish that still
collides is retried from the start a bounded number of times. Org scoping happens here: a read
sees the catalog and the caller's own org, never another org's specs.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callout.crypto import KeyRing
from callout.store.audit import AuditLog
from callout.store.db import Database
from callout.store.errors import Forbidden, NotFound, StoreConflict, StoreError
from callout.store.models import IntegrationSpec, utcnow

__all__ = ["PUBLISH_ATTEMPTS", "STATUSES", "PublishedSpec", "SpecStore"]

STATUSES = ("active", "deprecated", "retired")
#: Statuses only move forward.
_FORWARD = {"active": {"deprecated", "retired"}, "deprecated": {"retired"}, "retired": set()}
_ACTIONS = {"deprecated": "spec.deprecate", "retired": "spec.retire"}
#: How many times a publish that collided with a concurrent one starts over.
PUBLISH_ATTEMPTS = 8


@dataclass(frozen=True)
class PublishedSpec:
    """One published version; ``created`` is False when identical content was already there."""

    slug: str
    version: int
    owner_org: str | None
    name: str
    content_hash: str
    status: str
    created_at: datetime
    created_by: str
    document: Mapping[str, Any]
    created: bool = False


def _published(row: IntegrationSpec, *, created: bool = False) -> PublishedSpec:
    return PublishedSpec(
        slug=row.slug,
        version=row.version,
        owner_org=row.owner_org_id,
        name=row.name,
        content_hash=row.content_hash,
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
        document=json.loads(row.document),
        created=created,
    )


def _audit_view(row: IntegrationSpec) -> dict[str, Any]:
    return {
        "slug": row.slug,
        "version": row.version,
        "name": row.name,
        "contentHash": row.content_hash,
        "ownerOrg": row.owner_org_id,
        "status": row.status,
    }


def _visible(org_id: str | None) -> ColumnElement[bool]:
    """The catalog, plus the org's own specs (a platform admin, org None, sees the catalog)."""
    if org_id is None:
        return IntegrationSpec.owner_org_id.is_(None)
    return or_(IntegrationSpec.owner_org_id.is_(None), IntegrationSpec.owner_org_id == org_id)


def _identity(document: Mapping[str, Any]) -> tuple[str, str, str]:
    slug, name = document.get("slug"), document.get("name")
    if not isinstance(slug, str) or not slug or not isinstance(name, str) or not name:
        raise StoreError(
            "a spec document needs a non-empty string 'slug' and 'name'",
            code="invalid_document",
            field="slug" if not isinstance(slug, str) or not slug else "name",
        )
    try:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise StoreError("a spec document must be plain JSON", code="invalid_document") from None
    return slug, name, text


class SpecStore:
    """Publish, read and change the status of integration specs, scoped by org."""

    def __init__(self, db: Database, ring: KeyRing) -> None:
        """``ring`` signs the audit log's head (``AuditLog``); specs hold no secrets."""
        self._db = db
        self._audit = AuditLog(db, ring)

    async def publish(
        self,
        *,
        owner_org: str | None,
        document: Mapping[str, Any],
        content_hash: str,
        actor: str,
    ) -> PublishedSpec:
        """Store ``document`` as the slug's next version, or return the identical one stored."""
        slug, name, text = _identity(document)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                async with self._db.transaction() as s:
                    return await self._publish(s, slug, name, owner_org, text, content_hash, actor)
            except IntegrityError:
                if attempt == PUBLISH_ATTEMPTS:
                    break
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 -- jitter
        raise StoreConflict(
            f"publishing {slug!r} kept colliding with concurrent publishes; try again",
            code="publish_conflict",
        )

    async def _publish(
        self,
        s: AsyncSession,
        slug: str,
        name: str,
        owner_org: str | None,
        text: str,
        content_hash: str,
        actor: str,
    ) -> PublishedSpec:
        await self._db.lock(s, f"callout:spec:{slug}")
        owner = (
            await s.execute(
                select(IntegrationSpec.owner_org_id).where(IntegrationSpec.slug == slug).limit(1)
            )
        ).first()
        if owner is not None and owner[0] != owner_org:
            theirs = "the platform catalog" if owner[0] is None else "another org"
            raise StoreConflict(
                f"the slug {slug!r} belongs to {theirs}; publish under another slug",
                code="slug_taken",
                field="slug",
            )
        same = await s.scalar(
            select(IntegrationSpec).where(
                IntegrationSpec.slug == slug, IntegrationSpec.content_hash == content_hash
            )
        )
        if same is not None:
            return _published(same, created=False)
        latest = await s.scalar(
            select(func.max(IntegrationSpec.version)).where(IntegrationSpec.slug == slug)
        )
        row = IntegrationSpec(
            slug=slug,
            owner_org_id=owner_org,
            version=await self._next_version(latest),
            name=name,
            document=text,
            content_hash=content_hash,
            status="active",
            created_at=utcnow(),
            created_by=actor,
        )
        s.add(row)
        await s.flush()
        await self._audit.append(
            s,
            actor=actor,
            org_id=owner_org,
            action="spec.publish",
            target_type="integration_spec",
            target_id=f"{slug}@{row.version}",
            before=None,
            after=_audit_view(row),
        )
        return _published(row, created=True)

    async def _next_version(self, latest: int | None) -> int:
        """The version after ``latest`` (a seam: tests make it stale to exercise the retry)."""
        return (latest or 0) + 1

    def _query(self, org_id: str | None, slug: str) -> Select[IntegrationSpec]:
        return select(IntegrationSpec).where(IntegrationSpec.slug == slug, _visible(org_id))

    async def get(
        self, org_id: str | None, slug: str, version: int | None = None
    ) -> PublishedSpec | None:
        """A version visible to ``org_id`` (the newest when ``version`` is None), else None."""
        query = self._query(org_id, slug)
        if version is None:
            query = query.order_by(IntegrationSpec.version.desc()).limit(1)
        else:
            query = query.where(IntegrationSpec.version == version)
        async with self._db.session() as s:
            row = await s.scalar(query)
        return None if row is None else _published(row)

    async def status(self, org_id: str | None, slug: str, version: int) -> str | None:
        """A visible version's status (cheap: for cache refreshes, as content never changes),
        else None."""
        query = select(IntegrationSpec.status).where(
            IntegrationSpec.slug == slug, _visible(org_id), IntegrationSpec.version == version
        )
        async with self._db.session() as s:
            value: str | None = await s.scalar(query)
        return value

    async def list(
        self, org_id: str | None, *, latest_only: bool = False
    ) -> builtins.list[PublishedSpec]:
        """Every version visible to ``org_id`` (or only each slug's newest), by slug and version."""
        query = select(IntegrationSpec).where(_visible(org_id))
        if latest_only:
            newest = (
                select(IntegrationSpec.slug, func.max(IntegrationSpec.version).label("version"))
                .where(_visible(org_id))
                .group_by(IntegrationSpec.slug)
                .subquery()
            )
            query = query.join(
                newest,
                (newest.c.slug == IntegrationSpec.slug)
                & (newest.c.version == IntegrationSpec.version),
            )
        query = query.order_by(IntegrationSpec.slug, IntegrationSpec.version)
        async with self._db.session() as s:
            return [_published(row) for row in await s.scalars(query)]

    async def set_status(
        self, org_id: str | None, slug: str, version: int, status: str, actor: str
    ) -> PublishedSpec:
        """Deprecate or retire a version; only its owner may (org None: a catalog spec)."""
        if status not in STATUSES:
            raise StoreError(
                f"unknown status {status!r}: use one of {', '.join(STATUSES)}",
                code="invalid_status",
                field="status",
            )
        async with self._db.transaction() as s:
            query = self._query(org_id, slug).where(IntegrationSpec.version == version)
            row = await s.scalar(query.with_for_update())
            if row is None:
                raise NotFound(f"no integration spec {slug!r} version {version}")
            if row.owner_org_id != org_id:
                raise Forbidden(
                    f"{slug!r} is a catalog spec: only a platform admin can change its status"
                )
            if row.status == status:
                return _published(row)
            if status not in _FORWARD[row.status]:
                raise StoreConflict(
                    f"{slug!r} version {version} is {row.status}; a status cannot go back to "
                    f"{status} (active -> deprecated -> retired)",
                    code="invalid_transition",
                    field="status",
                )
            before = _audit_view(row)
            row.status = status
            await s.flush()
            await self._audit.append(
                s,
                actor=actor,
                org_id=row.owner_org_id,
                action=_ACTIONS[status],
                target_type="integration_spec",
                target_id=f"{slug}@{version}",
                before=before,
                after=_audit_view(row),
            )
            return _published(row)
