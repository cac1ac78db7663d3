"""Alembic environment: runs on the connection ``Database.migrate()`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from callout.store.models import Base


def run_migrations(connection: Connection) -> None:
    """Apply the pending versions on ``connection``, inside the caller's transaction."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise TypeError(
        "callout's migrations run through Database.migrate() (or `callout db upgrade`), "
        "which passes a connection; offline SQL generation is not supported"
    )
run_migrations(_connection)
