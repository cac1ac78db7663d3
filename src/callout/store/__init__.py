"""Storage: models, org-scoped repositories and migrations, on SQLite or PostgreSQL.

Use::

    db = await open_database(default_database_url(data_dir))  # migrated to the newest schema
    ring = load_key_ring(env_value, key_file)
    specs, audit, connections = SpecStore(db, ring), AuditLog(db, ring), ConnectionStore(db, ring)
"""

from callout.store.audit import AuditEntry, AuditLog, AuditVerification
from callout.store.connections import ConnectionRecord, ConnectionStore, Location
from callout.store.db import Database, default_database_url, open_database
from callout.store.errors import Forbidden, NotFound, StoreConflict, StoreError
from callout.store.rotation import (
    drop_retired_keys,
    keys_in_use,
    reseal_pending,
    rotate_master_key,
)
from callout.store.specs import PublishedSpec, SpecStore

__all__ = [
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "ConnectionRecord",
    "ConnectionStore",
    "Database",
    "Forbidden",
    "Location",
    "NotFound",
    "PublishedSpec",
    "SpecStore",
    "StoreConflict",
    "StoreError",
    "default_database_url",
    "drop_retired_keys",
    "keys_in_use",
    "open_database",
    "reseal_pending",
    "rotate_master_key",
]
