"""Tests for callout.store.rotation: reseal to a new key, interrupted rotation, dropping keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from callout.crypto import KeyRing, load_key_ring
from callout.store.audit import AuditLog
from callout.store.connections import ConnectionRecord, ConnectionStore
from callout.store.db import Database
from callout.store.errors import StoreConflict, StoreError
from callout.store.models import ConnectionSecret
from callout.store.rotation import (
    drop_retired_keys,
    keys_in_use,
    reseal_pending,
    rotate_master_key,
)


class Crash(Exception):
    """Stands in for the process dying between two rows."""


def secrets_of(i: int) -> dict[str, str]:
    return {"apiKey": f"key-{i}-Zq8vR2", "password": f"pw-{i}-Lm3x"}


async def seed(connections: ConnectionStore, n: int = 3) -> list[ConnectionRecord]:
    """n connections over two orgs, two secrets each."""
    return [
        await connections.create(
            f"org_{i % 2}", "acme-crm", f"c{i}", {"i": i}, secrets_of(i), "alice"
        )
        for i in range(n)
    ]


async def assert_all_open(db: Database, ring: KeyRing, records: list[ConnectionRecord]) -> None:
    store = ConnectionStore(db, ring)
    for i, record in enumerate(records):
        assert await store.decrypt_secrets(record.org_id, record.id) == secrets_of(i)


async def test_rotation_moves_every_secret_to_a_new_key(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """Every row ends on the new key and opens; the key file holds the new key and the old one."""
    records = await seed(connections)
    progress: list[tuple[int, int]] = []
    new_ring = await rotate_master_key(
        database, key_file, ring, on_progress=lambda d, t: progress.append((d, t))
    )
    new_id = new_ring.primary.key_id
    assert new_id != "k1"
    assert set(new_ring.key_ids()) == {new_id, "k1"}
    assert progress == [(i, 6) for i in range(1, 7)]
    assert await keys_in_use(database) == {new_id: 6}
    on_disk = load_key_ring(None, key_file)
    assert (on_disk.primary.key_id, set(on_disk.key_ids())) == (new_id, {new_id, "k1"})
    await assert_all_open(database, on_disk, records)
    # A ring holding only the new key opens everything too: nothing still needs k1.
    await assert_all_open(database, on_disk.without("k1"), records)


async def test_rotation_is_audited_with_key_ids_only(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """key.rotate and key.rotate.complete name key ids; no key material is in the log."""
    await seed(connections, 1)
    new_ring = await rotate_master_key(database, key_file, ring)
    entries = await AuditLog(database, new_ring).list(None)
    assert [e.action for e in reversed(entries)] == ["key.rotate", "key.rotate.complete"]
    assert entries[1].after == {
        "primary": new_ring.primary.key_id,
        "keyIds": list(new_ring.key_ids()),
    }
    assert entries[0].after["resealed"] == 2
    dumped = json.dumps([e.after for e in entries] + [e.before for e in entries])
    for key in (new_ring.primary, ring.primary):
        assert base64.b64encode(key.key).decode() not in dumped
        assert base64.urlsafe_b64encode(key.key).decode().rstrip("=") not in dumped


async def test_an_interrupted_rotation_leaves_everything_readable(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """A crash after k rows: all secrets open with the key file's ring; reseal_pending finishes."""
    records = await seed(connections, 4)

    def crash_after_three(done: int, total: int) -> None:
        if done == 3:
            raise Crash

    with pytest.raises(Crash):
        await rotate_master_key(database, key_file, ring, on_progress=crash_after_three)
    on_disk = load_key_ring(None, key_file)
    new_id = on_disk.primary.key_id
    assert await keys_in_use(database) == {new_id: 3, "k1": 5}
    await assert_all_open(database, on_disk, records)
    with pytest.raises(StoreConflict) as caught:
        await drop_retired_keys(database, key_file, on_disk)
    assert caught.value.code == "keys_in_use"
    assert "k1 (5)" in caught.value.message
    assert set(load_key_ring(None, key_file).key_ids()) == {new_id, "k1"}
    progress: list[tuple[int, int]] = []
    assert (
        await reseal_pending(database, on_disk, on_progress=lambda d, t: progress.append((d, t)))
        == 5
    )
    assert progress[-1] == (5, 5)
    assert await keys_in_use(database) == {new_id: 8}
    await assert_all_open(database, on_disk, records)
    assert await reseal_pending(database, on_disk) == 0


async def test_drop_retired_keys_after_a_complete_rotation(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """Once no row uses an old key, it leaves the key file and everything still opens."""
    records = await seed(connections)
    new_ring = await rotate_master_key(database, key_file, ring)
    dropped = await drop_retired_keys(database, key_file, new_ring)
    assert dropped.key_ids() == (new_ring.primary.key_id,)
    assert load_key_ring(None, key_file).key_ids() == (new_ring.primary.key_id,)
    await assert_all_open(database, dropped, records)
    audit = AuditLog(database, dropped)
    assert (await audit.list(None))[0].action == "key.drop"
    assert (await audit.verify()).ok  # the head is signed with a key the smaller ring holds
    assert await drop_retired_keys(database, key_file, dropped) is dropped


async def test_writes_during_a_rotation_use_the_new_key(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """A store given the new ring seals with it; a rotation interrupted before it is finished."""
    records = await seed(connections, 2)

    def crash_at_once(done: int, total: int) -> None:
        raise Crash

    with pytest.raises(Crash):
        await rotate_master_key(database, key_file, ring, on_progress=crash_at_once)
    on_disk = load_key_ring(None, key_file)
    connections.ring = on_disk
    late = await connections.create("org_0", "acme-crm", "late", {}, {"apiKey": "late"}, "bob")
    assert await connections.decrypt_secrets("org_0", late.id) == {"apiKey": "late"}
    await reseal_pending(database, on_disk)
    await assert_all_open(database, on_disk, records)
    assert set(await keys_in_use(database)) == {on_disk.primary.key_id}


async def test_a_secret_that_does_not_open_is_reported_and_the_rest_resealed(
    database: Database, connections: ConnectionStore, ring: KeyRing, key_file: Path
) -> None:
    """A tampered row fails the reseal with its id named; every other row still moves."""
    records = await seed(connections, 2)
    bad = records[0]
    async with database.transaction() as s:
        await s.execute(
            update(ConnectionSecret)
            .where(ConnectionSecret.connection_id == bad.id, ConnectionSecret.field == "apiKey")
            .values(sealed="v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA")
        )
    with pytest.raises(StoreError) as caught:
        await rotate_master_key(database, key_file, ring)
    assert caught.value.code == "reseal_failed"
    assert f"{bad.id}/apiKey" in caught.value.message
    on_disk = load_key_ring(None, key_file)
    assert await keys_in_use(database) == {on_disk.primary.key_id: 3, "k1": 1}
