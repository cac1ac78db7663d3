"""The tables, as SQLAlchemy 2 typed models; one schema for SQLite and PostgreSQL.

Migrations (``callout/store/migrations/versions``) create exactly these tables; a test compares
the migrated database with this metadata on both engines. Timestamps are timezone-aware UTC on
both (``UTCDateTime``); JSON columns are ``sa.JSON`` (``json`` on PostgreSQL, text on SQLite).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "AuditHead",
    "AuditRow",
    "Base",
    "Connection",
    "ConnectionSecret",
    "Flow",
    "IntegrationSpec",
    "Run",
    "RunEvent",
    "UTCDateTime",
    "new_connection_id",
    "utcnow",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: 64-bit on PostgreSQL; SQLite's INTEGER is 64-bit already and only "INTEGER" aliases the rowid.
BigInt = BigInteger().with_variant(Integer(), "sqlite")
_json = JSON(none_as_null=True)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_connection_id() -> str:
    """``conn_`` and 22 URL-safe random characters (128 bits)."""
    return "conn_" + secrets.token_urlsafe(16)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on both engines (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a stored timestamp must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class IntegrationSpec(Base):
    """One immutable version of an integration spec; ``owner_org_id`` NULL is the catalog."""

    __tablename__ = "integration_specs"
    __table_args__ = (
        UniqueConstraint("slug", "version"),
        UniqueConstraint("slug", "content_hash"),
        Index(None, "owner_org_id", "slug"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String)
    owner_org_id: Mapped[str | None] = mapped_column(String)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String)
    document: Mapped[str] = mapped_column(Text)  # the JSON text as published, byte for byte
    content_hash: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)  # active | deprecated | retired
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String)


class Connection(Base):
    """An org's credentials for one integration slug; soft-deleted, revision bumped per change."""

    __tablename__ = "connections"
    __table_args__ = (
        Index(None, "org_id", "integration_slug"),
        Index(
            "uq_connections_org_id_name_live",
            "org_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)
    org_id: Mapped[str] = mapped_column(String)
    integration_slug: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConnectionSecret(Base):
    """One sealed secret field (``crypto.Sealed.to_text()``); ``key_id`` drives rotation."""

    __tablename__ = "connection_secrets"

    connection_id: Mapped[str] = mapped_column(
        String, ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String, primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """One audit entry, chained: ``hash = sha256(prev_hash + canonical JSON of the entry)``."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "org_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String)
    org_id: Mapped[str | None] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    target_type: Mapped[str] = mapped_column(String)
    target_id: Mapped[str] = mapped_column(String)
    before: Mapped[Any] = mapped_column(_json, nullable=True)
    after: Mapped[Any] = mapped_column(_json, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String)
    hash: Mapped[str] = mapped_column(String)


class AuditHead(Base):
    """The audit log's newest entry, signed with a master key (one row, ``id`` 1): whoever can
    write the database but not read the keys cannot cut the tail off or re-hash the chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInt)
    hash: Mapped[str] = mapped_column(String)
    key_id: Mapped[str] = mapped_column(String)
    signature: Mapped[str] = mapped_column(String)


class Run(Base):
    """One flow run (written by the history writer; purged by ``started_at``)."""

    __tablename__ = "runs"
    __table_args__ = (
        Index(None, "org_id", "started_at"),
        Index(None, "org_id", "flow_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)
    org_id: Mapped[str | None] = mapped_column(String)
    flow_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    path: Mapped[Any] = mapped_column(JSON, nullable=False)
    error: Mapped[Any] = mapped_column(_json, nullable=True)
    ended_by: Mapped[str] = mapped_column(String)
    event_count: Mapped[int] = mapped_column(Integer)
    vars: Mapped[Any] = mapped_column(_json, nullable=True)  # the final vars, scrubbed


class RunEvent(Base):
    """One node event of a run, in order."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(
        String, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node_id: Mapped[str] = mapped_column(String)
    node_type: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    data: Mapped[Any] = mapped_column(JSON, nullable=False)


class Flow(Base):
    """A saved flow document of one org."""

    __tablename__ = "flows"

    org_id: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    document: Mapped[Any] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """An API key, stored hashed; ``org_id`` NULL is a platform-admin key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    org_id: Mapped[str | None] = mapped_column(String, index=True)
    role: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    hash: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
