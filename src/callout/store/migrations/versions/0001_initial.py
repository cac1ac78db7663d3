"""Initial schema: specs, connections and their sealed secrets, audit log, runs, flows, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# A version is frozen once released: it never imports the models, which keep changing.
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = sa.text("deleted_at IS NULL")


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "integration_specs",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        _str("slug"),
        _str("owner_org_id", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _str("name"),
        sa.Column("document", sa.Text(), nullable=False),
        _str("content_hash"),
        _str("status"),
        _at("created_at"),
        _str("created_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_specs")),
        sa.UniqueConstraint("slug", "version", name=op.f("uq_integration_specs_slug_version")),
        sa.UniqueConstraint(
            "slug", "content_hash", name=op.f("uq_integration_specs_slug_content_hash")
        ),
    )
    op.create_index(
        op.f("ix_integration_specs_owner_org_id_slug"),
        "integration_specs",
        ["owner_org_id", "slug"],
    )

    op.create_table(
        "connections",
        _str("id"),
        _str("org_id"),
        _str("integration_slug"),
        _str("name"),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        _at("deleted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
    )
    op.create_index(
        op.f("ix_connections_org_id_integration_slug"),
        "connections",
        ["org_id", "integration_slug"],
    )
    op.create_index(
        "uq_connections_org_id_name_live",
        "connections",
        ["org_id", "name"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )

    op.create_table(
        "connection_secrets",
        _str("connection_id"),
        _str("field"),
        sa.Column("sealed", sa.Text(), nullable=False),
        _str("key_id"),
        _at("updated_at"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_connection_secrets_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "field", name=op.f("pk_connection_secrets")),
    )
    op.create_index(op.f("ix_connection_secrets_key_id"), "connection_secrets", ["key_id"])

    op.create_table(
        "audit_log",
        sa.Column("seq", BIGINT, autoincrement=False, nullable=False),
        _at("at"),
        _str("actor"),
        _str("org_id", nullable=True),
        _str("action"),
        _str("target_type"),
        _str("target_id"),
        sa.Column("before", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("after", sa.JSON(none_as_null=True), nullable=True),
        _str("prev_hash"),
        _str("hash"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_org_id_seq"), "audit_log", ["org_id", "seq"])

    op.create_table(
        "runs",
        _str("id"),
        _str("org_id", nullable=True),
        _str("flow_id"),
        _str("status"),
        _at("started_at"),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(none_as_null=True), nullable=True),
        _str("ended_by"),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"])
    op.create_index(op.f("ix_runs_org_id_started_at"), "runs", ["org_id", "started_at"])

    op.create_table(
        "run_events",
        _str("run_id"),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _str("node_id"),
        _str("node_type"),
        _at("started_at"),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_run_events")),
    )

    op.create_table(
        "flows",
        _str("org_id"),
        _str("id"),
        _str("name"),
        sa.Column("document", sa.JSON(), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_flows")),
    )

    op.create_table(
        "api_keys",
        _str("id"),
        _str("org_id", nullable=True),
        _str("role"),
        _str("name"),
        _str("hash"),
        _at("created_at"),
        _at("last_used_at", nullable=True),
        _at("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("hash", name=op.f("uq_api_keys_hash")),
    )
    op.create_index(op.f("ix_api_keys_org_id"), "api_keys", ["org_id"])


def downgrade() -> None:
    for table in (
        "api_keys",
        "flows",
        "run_events",
        "runs",
        "audit_log",
        "connection_secrets",
        "connections",
        "integration_specs",
    ):
        op.drop_table(table)
