"""The append-only audit log, chained by hashes and capped by a signed head, so that editing,
deleting or truncating entries shows.

Threat: someone with write access to the database but not to the master keys (a stolen backup
restored with changes, an operator covering tracks) edits, deletes or adds audit entries. Each
entry's ``hash`` is ``sha256(prev_hash + canonical JSON of the entry)``, so ``verify()`` detects
an edited entry (its hash no longer matches), a deleted one (a gap in ``seq``) and an edit whose
hash alone was recomputed (the next entry's ``prev_hash`` no longer matches). A hash chain alone
cannot show a cut-off tail, or a chain re-hashed from the edit onwards: so every append also
rewrites the **head** (the newest seq and hash) signed with an HMAC under the primary master key
(``KeyRing.sign``), and ``verify()`` checks that the chain ends exactly there. Not covered: an
attacker who saved an old head row and later truncates the log back to it (only a copy of the
head kept outside the database shows that; ``AuditVerification.head_hash`` is the value to keep).

Entries are appended inside the writer's own transaction (the change, its entry and the head
commit together or not at all), serialised by ``Database.lock`` (PostgreSQL) or the write lock
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

from callout.crypto import KeyRing
from callout.store.db import Database
from callout.store.models import AuditHead, AuditRow, utcnow

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "AuditVerification", "entry_hash"]

#: The ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
_LOCK = "callout:audit"
_VERIFY_BATCH = 1000
#: What the head's HMAC key is derived for (``KeyRing.sign``).
HEAD_PURPOSE = "audit-head"
_HEAD_ID = 1


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


def _head_message(seq: int, hash_: str) -> bytes:
    return f"{HEAD_PURPOSE}:{seq}:{hash_}".encode()


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
    """Appends (inside other repositories' transactions), lists and verifies the audit log.

    ``ring`` signs the head on every append (with its primary key) and checks it in ``verify``
    (with whichever of its keys signed it): a ring without that key cannot verify the log.
    """

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

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
        key_id, signature = self._ring.sign(HEAD_PURPOSE, _head_message(seq, row.hash))
        head_row = await session.get(AuditHead, _HEAD_ID)
        if head_row is None:
            head_row = AuditHead(id=_HEAD_ID)
            session.add(head_row)
        head_row.seq, head_row.hash = seq, row.hash
        head_row.key_id, head_row.signature = key_id, signature
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
        """Walk the chain oldest first up to the signed head, reporting the first entry that
        breaks it; then check the head's signature, that the chain ends in its hash, and that
        nothing follows it.

        Appends may land while it runs: the head is read before the entries it covers, and
        entries found past it are walked too once a re-read head covers them.
        """
        head = await self._head()
        walk = _Walk()
        while True:
            end = 0 if head is None else head.seq
            async with self._db.session() as s:
                broken = await walk.until(s, end)
            if broken is not None:
                return broken
            if walk.checked < end:
                return walk.fail(
                    walk.checked + 1,
                    f"the log ends at entry {walk.checked} but the signed head is entry {end}: "
                    "the newest entries were deleted",
                )
            if head is not None:
                problem = self._head_problem(head, walk.prev)
                if problem is not None:
                    return walk.fail(None, problem)
            async with self._db.session() as s:
                beyond = await s.scalar(select(AuditRow.seq).where(AuditRow.seq > end).limit(1))
            if beyond is None:
                head_hash = None if walk.checked == 0 else walk.prev
                return AuditVerification(
                    True, walk.checked, None, f"{walk.checked} entries intact", head_hash
                )
            newer = await self._head()
            if newer is None or newer.seq <= end:  # nothing signed them: not Callout's appends
                if head is None:
                    why = (
                        "the signed head is missing: it was deleted (or every entry predates "
                        "signed heads, schema 0003, and no change has been audited since)"
                    )
                    return walk.fail(None, why)
                return walk.fail(
                    end + 1, f"entries after {end}, the signed head, were added outside Callout"
                )
            head = newer

    async def _head(self) -> _Head | None:
        async with self._db.session() as s:
            row = await s.get(AuditHead, _HEAD_ID)
            return None if row is None else _Head(row.seq, row.hash, row.key_id, row.signature)

    def _head_problem(self, head: _Head, last_hash: str) -> str | None:
        """Why the signed head does not vouch for a chain ending in ``last_hash``, or None."""
        if head.key_id not in self._ring.key_ids():
            return (
                f"the head is signed with master key {head.key_id!r}, which is not in the key "
                f"ring (knows {', '.join(self._ring.key_ids())}); verify with the ring that "
                "holds it"
            )
        message = _head_message(head.seq, head.hash)
        if not self._ring.verify_signature(HEAD_PURPOSE, message, head.key_id, head.signature):
            return "the head's signature does not match: the head was edited"
        if head.hash != last_hash:
            return (
                "the chain does not end in the signed head's hash: entries were edited and the "
                "chain re-hashed"
            )
        return None


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    key_id: str
    signature: str


class _Walk:
    """The chain checked so far: the next seq expected, the last hash, how many entries."""

    def __init__(self) -> None:
        self.expected, self.prev, self.checked = 1, GENESIS_HASH, 0

    def fail(self, seq: int | None, why: str) -> AuditVerification:
        return AuditVerification(False, self.checked, seq, why)

    async def until(self, s: AsyncSession, end: int) -> AuditVerification | None:
        """Check entries up to seq ``end``; a failure, or None (``checked`` says how far)."""
        while self.expected <= end:
            query = select(AuditRow).where(AuditRow.seq >= self.expected, AuditRow.seq <= end)
            rows = list(await s.scalars(query.order_by(AuditRow.seq).limit(_VERIFY_BATCH)))
            if not rows:
                return None
            for row in rows:
                if row.seq != self.expected:
                    why = f"entry {self.expected} is missing (the next is {row.seq}): deleted"
                    return self.fail(self.expected, why)
                if row.hash != entry_hash(row.prev_hash, **_fields(row)):
                    return self.fail(row.seq, f"entry {row.seq} does not match its hash: edited")
                if row.prev_hash != self.prev:
                    why = (
                        f"entry {row.seq} does not link to entry {row.seq - 1}: "
                        "an earlier entry was edited and re-hashed, or replaced"
                    )
                    return self.fail(row.seq, why)
                self.prev, self.expected = row.hash, self.expected + 1
                self.checked += 1
            s.expunge_all()
        return None
