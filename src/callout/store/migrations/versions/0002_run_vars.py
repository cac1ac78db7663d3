"""Run history: a run's final (scrubbed) vars, and an index for listing one flow's runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("vars", sa.JSON(none_as_null=True), nullable=True))
    op.create_index(
        op.f("ix_runs_org_id_flow_id_started_at"), "runs", ["org_id", "flow_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_org_id_flow_id_started_at"), table_name="runs")
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column("vars")
