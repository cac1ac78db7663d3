"""Tests for callout.store.audit: the hash chain, tamper detection, listing and concurrency."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

from sqlalchemy import delete, select, update

from callout.crypto import KeyRing, MasterKey
from callout.store.audit import GENESIS_HASH, AuditEntry, AuditLog, entry_hash
from callout.store.db import Database
from callout.store.models import AuditHead, AuditRow


async def add(
    db: Database, audit: AuditLog, n: int = 1, org: str | None = "org_a", **extra: Any
) -> list[AuditEntry]:
    entries = []
    for i in range(n):
        async with db.transaction() as s:
            entry = await audit.append(
                s,
                actor="alice",
                org_id=org,
                action="thing.change",
                target_type="thing",
                target_id=f"t{i}",
                before={"n": i},
                after={"n": i + 1, "tags": ("a", "b"), **extra},
            )
        entries.append(entry)
    return entries


def recomputed_hash(row: AuditRow) -> str:
    """The hash an edited row must carry to pass its own check (what anyone can compute)."""
    names = ("seq", "at", "actor", "org_id", "action", "target_type", "target_id")
    fields = {k: getattr(row, k) for k in (*names, "before", "after")}
    return entry_hash(row.prev_hash, **fields)


async def test_entries_form_a_hash_chain(database: Database, audit: AuditLog) -> None:
    """seq counts from 1; each prev_hash is the previous entry's hash; verify() agrees."""
    entries = await add(database, audit, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(entries))
    assert entries[0].after == {"n": 1, "tags": ["a", "b"]}
    check = await audit.verify()
    assert (check.ok, check.checked, check.first_bad_seq) == (True, 5, None)
    assert check.head_hash == entries[-1].hash


async def test_an_empty_log_verifies(audit: AuditLog) -> None:
    """No entries is a valid chain of length 0."""
    check = await audit.verify()
    assert (check.ok, check.checked, check.head_hash) == (True, 0, None)


async def test_stored_entries_hash_as_written(database: Database, audit: AuditLog) -> None:
    """An entry read back from the database recomputes to its stored hash (types round-trip)."""
    (entry,) = await add(database, audit, unicode="é ✓", number=1.5, nothing=None)
    (stored,) = await audit.list("org_a")
    assert stored == entry
    fields = {k: getattr(stored, k) for k in ("seq", "at", "actor", "org_id", "action")}
    fields |= {k: getattr(stored, k) for k in ("target_type", "target_id", "before", "after")}
    assert entry_hash(stored.prev_hash, **fields) == stored.hash
    assert stored.at.tzinfo is not None


async def test_verify_detects_an_edited_entry(database: Database, audit: AuditLog) -> None:
    """Changing any field of an entry breaks its hash."""
    await add(database, audit, 4)
    async with database.transaction() as s:
        await s.execute(update(AuditRow).where(AuditRow.seq == 2).values(actor="mallory"))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq, check.checked) == (False, 2, 1)
    assert "edited" in check.reason


async def test_verify_detects_an_edited_json_field(database: Database, audit: AuditLog) -> None:
    """Changing the before/after of an entry breaks its hash too."""
    await add(database, audit, 3)
    async with database.transaction() as s:
        await s.execute(update(AuditRow).where(AuditRow.seq == 3).values(after={"n": 99}))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq) == (False, 3)


async def test_verify_detects_a_deleted_entry(database: Database, audit: AuditLog) -> None:
    """A gap in seq is reported at the missing entry, first or in the middle."""
    await add(database, audit, 4)
    async with database.transaction() as s:
        await s.execute(delete(AuditRow).where(AuditRow.seq == 3))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq, check.checked) == (False, 3, 2)
    assert "missing" in check.reason
    async with database.transaction() as s:
        await s.execute(delete(AuditRow).where(AuditRow.seq == 1))
    assert (await audit.verify()).first_bad_seq == 1


async def test_verify_detects_a_rehashed_edit(database: Database, audit: AuditLog) -> None:
    """An edit whose hash was recomputed breaks the link from the next entry."""
    await add(database, audit, 4)
    async with database.transaction() as s:
        row = await s.scalar(select(AuditRow).where(AuditRow.seq == 2))
        assert row is not None
        row.actor = "mallory"
        row.hash = recomputed_hash(row)
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq) == (False, 3)
    assert "link" in check.reason


async def test_list_is_scoped_by_org_and_pages_backwards(
    database: Database, audit: AuditLog
) -> None:
    """An org lists only its entries, newest first; before_seq pages; None is the platform's."""
    await add(database, audit, 3, org="org_a")
    await add(database, audit, 2, org="org_b")
    await add(database, audit, 1, org=None)
    assert [e.seq for e in await audit.list("org_a")] == [3, 2, 1]
    assert [e.seq for e in await audit.list("org_b")] == [5, 4]
    assert [e.seq for e in await audit.list(None)] == [6]
    assert [e.seq for e in await audit.list("org_a", limit=2)] == [3, 2]
    assert [e.seq for e in await audit.list("org_a", limit=2, before_seq=2)] == [1]
    assert await audit.list("org_c") == []


async def test_concurrent_appends_keep_one_chain(database: Database, audit: AuditLog) -> None:
    """30 concurrent writers produce seq 1..30 and an intact chain."""
    results = await asyncio.gather(*(add(database, audit) for _ in range(30)))
    assert sorted(e.seq for batch in results for e in batch) == list(range(1, 31))
    check = await audit.verify()
    assert (check.ok, check.checked) == (True, 30)


async def test_appends_from_two_processes_keep_one_chain(
    database: Database, audit: AuditLog, ring: KeyRing
) -> None:
    """Two Database handles on one database (two replicas) append without forking the chain."""
    other = Database(database.url.render_as_string(hide_password=False))
    try:
        await asyncio.gather(
            *(add(database, audit) for _ in range(10)),
            *(add(other, AuditLog(other, ring)) for _ in range(10)),
        )
    finally:
        await other.dispose()
    check = await audit.verify()
    assert (check.ok, check.checked) == (True, 20)


async def rehash_from(database: Database, seq: int, **changes: Any) -> None:
    """What an attacker with database access but no key does: edit entry ``seq`` and recompute
    every hash from there on, so the chain itself is consistent again."""
    async with database.transaction() as s:
        rows = list(await s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        prev = GENESIS_HASH
        for row in rows:
            if row.seq == seq:
                for name, value in changes.items():
                    setattr(row, name, value)
            if row.seq >= seq:
                row.prev_hash = prev
                row.hash = recomputed_hash(row)
            prev = row.hash


async def test_verify_detects_a_chain_rehashed_to_the_end(
    database: Database, audit: AuditLog
) -> None:
    """An edit with every later hash recomputed leaves a consistent chain, which no longer ends
    in the signed head's hash."""
    await add(database, audit, 4)
    await rehash_from(database, 2, actor="mallory")
    check = await audit.verify()
    assert (check.ok, check.checked) == (False, 4)
    assert "re-hashed" in check.reason


async def test_verify_detects_the_newest_entries_deleted(
    database: Database, audit: AuditLog
) -> None:
    """Cutting off the tail leaves a valid shorter chain; the signed head still names entry 5."""
    await add(database, audit, 5)
    async with database.transaction() as s:
        await s.execute(delete(AuditRow).where(AuditRow.seq >= 4))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq, check.checked) == (False, 4, 3)
    assert "newest entries were deleted" in check.reason
    async with database.transaction() as s:  # every entry gone, the head left
        await s.execute(delete(AuditRow))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq) == (False, 1)


async def test_verify_detects_entries_added_after_the_head(
    database: Database, audit: AuditLog
) -> None:
    """An entry appended by hand (hashed correctly, but not signed) is refused."""
    (*_, last) = await add(database, audit, 2)
    forged = {
        "seq": 3,
        "at": last.at,
        "actor": "mallory",
        "org_id": None,
        "action": "thing.change",
        "target_type": "thing",
        "target_id": "t9",
        "before": None,
        "after": None,
    }
    async with database.transaction() as s:
        s.add(AuditRow(**forged, prev_hash=last.hash, hash=entry_hash(last.hash, **forged)))
    check = await audit.verify()
    assert (check.ok, check.first_bad_seq, check.checked) == (False, 3, 2)
    assert "added outside Callout" in check.reason


async def test_verify_detects_a_deleted_or_forged_head(database: Database, audit: AuditLog) -> None:
    """The head cannot be deleted, nor moved to a re-hashed chain without the key."""
    await add(database, audit, 3)
    await rehash_from(database, 3, actor="mallory")
    async with database.transaction() as s:
        row = await s.scalar(select(AuditRow).where(AuditRow.seq == 3))
        assert row is not None
        await s.execute(update(AuditHead).values(hash=row.hash))  # the old signature stays
    check = await audit.verify()
    assert check.ok is False
    assert "signature does not match" in check.reason
    async with database.transaction() as s:
        await s.execute(delete(AuditHead))
    check = await audit.verify()
    assert check.ok is False
    assert "head is missing" in check.reason


async def test_verify_needs_the_key_that_signed_the_head(
    database: Database, audit: AuditLog, ring: KeyRing
) -> None:
    """A ring without the signing key cannot vouch for the log, and says which key it needs;
    a ring that also holds it (after a rotation, say) verifies."""
    await add(database, audit, 2)
    stranger = KeyRing([MasterKey.generate("k2")])
    check = await AuditLog(database, stranger).verify()
    assert check.ok is False
    assert "'k1', which is not in the key ring" in check.reason
    assert (await AuditLog(database, stranger.with_key(ring.primary)).verify()).ok


async def test_a_verify_racing_appends_does_not_report_tampering(
    database: Database, audit: AuditLog
) -> None:
    """verify() reads the head and then the chain; appends landing in between are not a
    truncation or a forgery."""
    await add(database, audit, 3)
    checks, _ = await asyncio.gather(
        asyncio.gather(*(audit.verify() for _ in range(5))),
        asyncio.gather(*(add(database, audit) for _ in range(5))),
    )
    assert [c.reason for c in checks if not c.ok] == []
    assert (await audit.verify()).checked == 8
