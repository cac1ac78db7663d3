"""The append-only audit log, chained by hashes so that editing or deleting an entry shows.

Threat: someone with write access to the database (a stolen backup restored with changes, an
operator covering tracks) edits or deletes audit entries. Each entry's ``hash`` is
``sha256(prev_hash + canonical JSON of the entry)``, so ``verify()`` detects an edited entry (its
hash no longer matches), a deleted one (a gap in ``seq``) and an edit whose hash was recomputed
(the next entry's ``prev_hash`` no longer matches). Truncating the newest entries leaves a valid
shorter chain: keep ``AuditVerification.head_hash`` somewhere else to detect that too.

Entries are appended inside the writer's own transaction (the change and its entry commit
together or not at all), serialised by ``Database.lock`` (PostgreSQL) or the write lock
(SQLite), with the ``seq`` primary key as the backstop. Entries never hold a secret value or a
ciphertext: callers pass metadata only.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callout.store.db import Database
from callout.store.models import AuditRow, utcnow

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "AuditVerification", "entry_hash"]

#: The ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
_LOCK = "callout:audit"
_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry: who (``actor``) did what (``action`` on ``target``) when, before/after."""

    seq: int
    at: datetime
    actor: str
    org_id: str | None
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerification:
    """The result of checking the chain: ``ok``, how many entries, and the first bad one."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    #: The hash of the newest entry; recorded elsewhere it also reveals a truncated tail.
    head_hash: str | None = None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, **entry: Any) -> str:
    """``sha256(prev_hash + canonical JSON)`` of an entry's fields (``at`` as ISO UTC text)."""
    fields = dict(entry)
    fields["at"] = _stamp(fields["at"])
    return hashlib.sha256((prev_hash + _canonical(fields)).encode()).hexdigest()


def _fields(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "org_id": row.org_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "before": row.before,
        "after": row.after,
    }


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(**_fields(row), prev_hash=row.prev_hash, hash=row.hash)


class AuditLog:
    """Appends (inside other repositories' transactions), lists and verifies the audit log."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        session: AsyncSession,
        *,
        actor: str,
        org_id: str | None,
        action: str,
        target_type: str,
        target_id: str,
        before: Any,
        after: Any,
    ) -> AuditEntry:
        """Add an entry in ``session``'s transaction (a ``Database.transaction()``).

        Call it last in the transaction: it holds the audit lock until the commit.
        """
        await self._db.lock(session, _LOCK)
        head = (
            await session.execute(
                select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
            )
        ).first()
        seq, prev = (head[0] + 1, head[1]) if head is not None else (1, GENESIS_HASH)
        row = AuditRow(
            seq=seq,
            at=utcnow(),
            actor=actor,
            org_id=org_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            # What is hashed is what a JSON column gives back (tuples become lists, ...).
            before=json.loads(_canonical(before)),
            after=json.loads(_canonical(after)),
            prev_hash=prev,
            hash="",
        )
        row.hash = entry_hash(prev, **_fields(row))
        session.add(row)
        await session.flush()
        return _entry(row)

    async def list(
        self, org_id: str | None, limit: int = 100, before_seq: int | None = None
    ) -> builtins.list[AuditEntry]:
        """One org's entries, newest first (``org_id`` None: the platform's own entries)."""
        query = select(AuditRow)
        if org_id is None:
            query = query.where(AuditRow.org_id.is_(None))
        else:
            query = query.where(AuditRow.org_id == org_id)
        if before_seq is not None:
            query = query.where(AuditRow.seq < before_seq)
        query = query.order_by(AuditRow.seq.desc()).limit(max(1, min(limit, 1000)))
        async with self._db.session() as s:
            return [_entry(row) for row in await s.scalars(query)]

    async def verify(self) -> AuditVerification:
        """Walk the whole chain, oldest first, and report the first entry that breaks it."""
        expected, prev, checked = 1, GENESIS_HASH, 0
        async with self._db.session() as s:
            while True:
                query = select(AuditRow).where(AuditRow.seq >= expected)
                rows = list(await s.scalars(query.order_by(AuditRow.seq).limit(_VERIFY_BATCH)))
                if not rows:
                    break
                for row in rows:
                    if row.seq != expected:
                        why = f"entry {expected} is missing (the next is {row.seq}): deleted"
                        return AuditVerification(False, checked, expected, why)
                    if row.hash != entry_hash(row.prev_hash, **_fields(row)):
                        why = f"entry {row.seq} does not match its hash: edited"
                        return AuditVerification(False, checked, row.seq, why)
                    if row.prev_hash != prev:
                        why = (
                            f"entry {row.seq} does not link to entry {row.seq - 1}: "
                            "an earlier entry was edited and re-hashed, or replaced"
                        )
                        return AuditVerification(False, checked, row.seq, why)
                    prev, expected, checked = row.hash, expected + 1, checked + 1
                s.expunge_all()
        head = None if checked == 0 else prev
        return AuditVerification(True, checked, None, f"{checked} entries intact", head)
