"""Master-key rotation over the stored secrets (steps 2-4 of ``callout.crypto``'s plan).

Threat: losing secrets, or a window where some are unreadable, while the master key changes. The
order makes every crash point safe: the key file is replaced atomically by a ring holding the
new key (primary) and every old key *before* any row is resealed; rows are then resealed one per
transaction, each a compare-and-swap on the old ciphertext (a secret set meanwhile is left as
set); so after a crash anywhere every secret opens with the ring in the key file, and
``reseal_pending`` finishes the job. Old keys leave the file only through ``drop_retired_keys``,
which refuses while any row still names one. Audit entries carry key ids, never key material.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select, update

from callout.crypto import (
    CryptoError,
    KeyRing,
    Sealed,
    SecretBinding,
    rotation_plan,
    write_key_file,
)
from callout.store.audit import AuditLog
from callout.store.db import Database
from callout.store.errors import StoreConflict, StoreError
from callout.store.models import Connection, ConnectionSecret, utcnow

__all__ = [
    "Progress",
    "drop_retired_keys",
    "keys_in_use",
    "reseal_pending",
    "rotate_master_key",
]

#: Called after each resealed row is committed, with (rows done, rows to do).
Progress = Callable[[int, int], None]
ACTOR = "system:key-rotation"


async def _audit(
    db: Database, ring: KeyRing, action: str, target: str, before: object, after: object
) -> None:
    async with db.transaction() as s:
        await AuditLog(db, ring).append(
            s,
            actor=ACTOR,
            org_id=None,
            action=action,
            target_type="master_key",
            target_id=target,
            before=before,
            after=after,
        )


def _ids(ring: KeyRing) -> dict[str, object]:
    return {"primary": ring.primary.key_id, "keyIds": list(ring.key_ids())}


async def rotate_master_key(
    db: Database, key_file: Path, ring: KeyRing, *, on_progress: Progress | None = None
) -> KeyRing:
    """Generate a new primary key, install it in ``key_file``, reseal every secret with it.

    Returns the new ring (new primary, old keys kept). Interrupted, it leaves every secret
    readable by the ring in ``key_file``; ``reseal_pending`` with that ring finishes.
    """
    new_ring, key = rotation_plan(ring)
    # Audit first: no key change without its entry (an entry without a change is harmless).
    await _audit(db, ring, "key.rotate", key.key_id, _ids(ring), _ids(new_ring))
    write_key_file(key_file, new_ring)
    done = await _reseal(db, new_ring, on_progress)
    after = {**_ids(new_ring), "resealed": done}
    await _audit(db, new_ring, "key.rotate.complete", key.key_id, None, after)
    return new_ring


async def reseal_pending(
    db: Database, ring: KeyRing, *, on_progress: Progress | None = None
) -> int:
    """Finish an interrupted rotation: reseal every row not on ``ring``'s primary key."""
    done = await _reseal(db, ring, on_progress)
    after = {**_ids(ring), "resealed": done, "resumed": True}
    await _audit(db, ring, "key.rotate.complete", ring.primary.key_id, None, after)
    return done


async def _reseal(db: Database, ring: KeyRing, on_progress: Progress | None) -> int:
    primary = ring.primary.key_id
    async with db.session() as s:
        pending = (
            await s.execute(
                select(ConnectionSecret.connection_id, ConnectionSecret.field)
                .where(ConnectionSecret.key_id != primary)
                .order_by(ConnectionSecret.connection_id, ConnectionSecret.field)
            )
        ).all()
    failed: list[str] = []
    for done, (connection_id, field) in enumerate(pending, start=1):
        try:
            await _reseal_one(db, ring, connection_id, field)
        except CryptoError:
            failed.append(f"{connection_id}/{field}")
        if on_progress is not None:
            on_progress(done, len(pending))
    if failed:
        shown = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
        raise StoreError(
            f"{len(failed)} secret(s) do not open with the key ring and still use an old key: "
            f"{shown}; set them again, or add the key that sealed them and run the reseal again",
            code="reseal_failed",
        )
    return len(pending)


async def _reseal_one(db: Database, ring: KeyRing, connection_id: str, field: str) -> None:
    async with db.transaction() as s:
        found = (
            await s.execute(
                select(Connection.org_id, ConnectionSecret.sealed)
                .join(Connection, Connection.id == ConnectionSecret.connection_id)
                .where(ConnectionSecret.connection_id == connection_id)
                .where(ConnectionSecret.field == field)
            )
        ).first()
        if found is None:  # deleted meanwhile
            return
        org_id, text = found
        binding = SecretBinding(org_id, connection_id, field)
        resealed = ring.reseal(Sealed.from_text(text), binding)
        await s.execute(
            update(ConnectionSecret)
            .where(
                ConnectionSecret.connection_id == connection_id,
                ConnectionSecret.field == field,
                ConnectionSecret.sealed == text,  # unchanged since read: else it was set anew
            )
            .values(sealed=resealed.to_text(), key_id=resealed.key_id, updated_at=utcnow())
        )


async def keys_in_use(db: Database) -> dict[str, int]:
    """How many stored secrets each key id seals."""
    query = select(ConnectionSecret.key_id, func.count()).group_by(ConnectionSecret.key_id)
    async with db.session() as s:
        rows = (await s.execute(query)).all()
    return {row[0]: row[1] for row in rows}


async def drop_retired_keys(db: Database, key_file: Path, ring: KeyRing) -> KeyRing:
    """Rewrite ``key_file`` with only the primary key, once no stored secret uses another."""
    primary = ring.primary.key_id
    old = {k: n for k, n in (await keys_in_use(db)).items() if k != primary}
    if old:
        listed = ", ".join(f"{k} ({n})" for k, n in sorted(old.items()))
        raise StoreConflict(
            f"secrets still use retired keys: {listed}; finish the rotation (reseal) first",
            code="keys_in_use",
        )
    retired = [k for k in ring.key_ids() if k != primary]
    if not retired:
        return ring
    new_ring = ring
    for key_id in retired:
        new_ring = new_ring.without(key_id)
    await _audit(db, ring, "key.drop", primary, _ids(ring), {**_ids(new_ring), "dropped": retired})
    write_key_file(key_file, new_ring)
    return new_ring
