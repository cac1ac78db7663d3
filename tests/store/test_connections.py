"""Tests for callout.store.connections: CRUD, org scoping, secrets sealed at rest, audit."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from callout.crypto import DecryptionFailed, KeyRing, Sealed
from callout.store.audit import AuditLog
from callout.store.connections import ConnectionRecord, ConnectionStore
from callout.store.db import Database
from callout.store.errors import NotFound, StoreConflict, StoreError
from callout.store.models import ConnectionSecret
from tests.pg import PostgresServer
from tests.store.helpers import encoded_forms, sqlite_files

API_KEY = "sk-live-7hG2pQ9xVb4mN1zR8tYw"
PASSWORD = "correct horse battery staple"
CONFIG = {"baseUrl": "https://api.acme.test", "accountId": "A-17"}


async def make(
    connections: ConnectionStore,
    org: str = "org_a",
    name: str = "Acme prod",
    secrets: dict[str, str] | None = None,
) -> ConnectionRecord:
    return await connections.create(
        org, "acme-crm", name, CONFIG, {"apiKey": API_KEY} if secrets is None else secrets, "alice"
    )


async def raw_secrets(db: Database, connection_id: str) -> dict[str, ConnectionSecret]:
    async with db.session() as s:
        rows = await s.scalars(
            select(ConnectionSecret).where(ConnectionSecret.connection_id == connection_id)
        )
        return {row.field: row for row in rows}


async def test_create_get_and_list(connections: ConnectionStore) -> None:
    """A created connection reads back with config and secret metadata, never a value."""
    created = await make(connections, secrets={"apiKey": API_KEY, "password": PASSWORD})
    assert re.fullmatch(r"conn_[A-Za-z0-9_-]{22}", created.id)
    assert (created.org_id, created.integration_slug, created.name) == (
        "org_a",
        "acme-crm",
        "Acme prod",
    )
    assert (created.config, created.revision) == (CONFIG, 1)
    assert set(created.secrets) == {"apiKey", "password"}
    assert created.secrets["apiKey"]["set"] is True
    assert created.secrets["apiKey"]["updatedAt"].endswith("+00:00")
    assert await connections.get("org_a", created.id) == created
    assert API_KEY not in repr(created)
    assert PASSWORD not in repr(created)
    other = await make(connections, name="Acme staging", secrets={})
    await connections.create("org_a", "globex", "Globex", {}, {}, "alice")
    assert [c.name for c in await connections.list("org_a")] == [
        "Acme prod",
        "Acme staging",
        "Globex",
    ]
    assert [c.id for c in await connections.list("org_a", "acme-crm")] == [created.id, other.id]
    assert other.secrets == {}


async def test_decrypt_secrets_opens_every_field(connections: ConnectionStore) -> None:
    """decrypt_secrets returns the plaintext of every set field."""
    created = await make(connections, secrets={"apiKey": API_KEY, "password": PASSWORD})
    assert await connections.decrypt_secrets("org_a", created.id) == {
        "apiKey": API_KEY,
        "password": PASSWORD,
    }
    empty = await make(connections, name="no secrets", secrets={})
    assert await connections.decrypt_secrets("org_a", empty.id) == {}


async def test_update_bumps_the_revision(connections: ConnectionStore) -> None:
    """Each update changes what it names and bumps the revision; revision() reads it cheaply."""
    created = await make(connections, secrets={"apiKey": API_KEY, "password": PASSWORD})
    renamed = await connections.update("org_a", created.id, name="Acme EU", actor="bob")
    assert (renamed.name, renamed.revision, renamed.config) == ("Acme EU", 2, CONFIG)
    assert renamed.updated_at >= created.updated_at
    reconfigured = await connections.update(
        "org_a", created.id, config={"baseUrl": "https://eu.acme.test"}, actor="bob"
    )
    assert (reconfigured.config, reconfigured.revision) == ({"baseUrl": "https://eu.acme.test"}, 3)
    rotated = await connections.update(
        "org_a",
        created.id,
        set_secrets={"apiKey": "sk-new", "token": "t0k"},
        unset_secrets=["password"],
        actor="bob",
    )
    assert set(rotated.secrets) == {"apiKey", "token"}
    assert rotated.revision == 4
    assert rotated.secrets["apiKey"]["updatedAt"] != created.secrets["apiKey"]["updatedAt"]
    assert await connections.decrypt_secrets("org_a", created.id) == {
        "apiKey": "sk-new",
        "token": "t0k",
    }
    assert await connections.revision("org_a", created.id) == 4
    with pytest.raises(StoreError):
        await connections.update(
            "org_a", created.id, set_secrets={"x": "1"}, unset_secrets=["x"], actor="bob"
        )
    unchanged = await connections.update("org_a", created.id, actor="bob")
    assert unchanged == rotated  # nothing asked, nothing changed: no new revision


async def test_names_are_unique_among_an_orgs_live_connections(
    connections: ConnectionStore,
) -> None:
    """A name is taken within one org until that connection is deleted; other orgs may use it."""
    first = await make(connections)
    with pytest.raises(StoreConflict) as caught:
        await make(connections)
    assert caught.value.code == "name_taken"
    second = await make(connections, name="Acme 2")
    with pytest.raises(StoreConflict):
        await connections.update("org_a", second.id, name="Acme prod", actor="alice")
    await make(connections, org="org_b")
    await connections.delete("org_a", first.id, "alice")
    assert (await make(connections)).name == "Acme prod"


async def test_another_org_cannot_touch_a_connection(connections: ConnectionStore) -> None:
    """Org B cannot get, list, update, delete, decrypt or read the revision of org A's."""
    mine = await make(connections)
    assert await connections.get("org_b", mine.id) is None
    assert await connections.list("org_b") == []
    assert await connections.revision("org_b", mine.id) is None
    with pytest.raises(NotFound):
        await connections.update("org_b", mine.id, name="stolen", actor="mallory")
    with pytest.raises(NotFound):
        await connections.update(
            "org_b", mine.id, set_secrets={"apiKey": "attacker"}, actor="mallory"
        )
    with pytest.raises(NotFound):
        await connections.delete("org_b", mine.id, "mallory")
    with pytest.raises(NotFound):
        await connections.decrypt_secrets("org_b", mine.id)
    assert await connections.locate("org_b", mine.id) == "other_org"
    assert await connections.get("org_a", mine.id) == mine  # untouched
    assert await connections.decrypt_secrets("org_a", mine.id) == {"apiKey": API_KEY}


async def test_locate_names_the_preflight_failure(connections: ConnectionStore) -> None:
    """locate answers ok, missing, other_org or deleted, and nothing more."""
    mine = await make(connections)
    assert await connections.locate("org_a", mine.id) == "ok"
    assert await connections.locate("org_a", "conn_doesnotexist0000000000") == "missing"
    await connections.delete("org_a", mine.id, "alice")
    assert await connections.locate("org_a", mine.id) == "deleted"
    assert await connections.locate("org_b", mine.id) == "other_org"


async def test_delete_is_soft_and_destroys_the_secrets(
    connections: ConnectionStore, database: Database
) -> None:
    """A deleted connection disappears from reads and its sealed secrets are gone."""
    mine = await make(connections, secrets={"apiKey": API_KEY, "password": PASSWORD})
    assert len(await raw_secrets(database, mine.id)) == 2
    await connections.delete("org_a", mine.id, "alice")
    assert await raw_secrets(database, mine.id) == {}
    assert await connections.get("org_a", mine.id) is None
    assert await connections.list("org_a") == []
    assert await connections.revision("org_a", mine.id) is None
    with pytest.raises(NotFound):
        await connections.decrypt_secrets("org_a", mine.id)
    with pytest.raises(NotFound):
        await connections.delete("org_a", mine.id, "alice")
    with pytest.raises(NotFound):
        await connections.update("org_a", mine.id, name="back", actor="alice")
    async with database.session() as s:
        row = (
            await s.execute(
                text("SELECT deleted_at, revision FROM connections WHERE id = :id"), {"id": mine.id}
            )
        ).one()
    assert row[0] is not None
    assert row[1] == 2


def read_if_present(path: Path) -> bytes | None:
    """The file's bytes, or None when the server removed it after the listing.

    A live PostgreSQL unlinks files of its own (the relation cache's
    `pg_internal.init`, old WAL segments) at any moment; a file gone before
    the read holds nothing left to check.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


async def test_secrets_are_sealed_at_rest(
    connections: ConnectionStore,
    database: Database,
    ring: KeyRing,
    request: pytest.FixtureRequest,
) -> None:
    """The stored value is a Sealed text under the ring's key; no form of the secret is on disk."""
    mine = await make(connections, secrets={"apiKey": API_KEY, "password": PASSWORD})
    await connections.update("org_a", mine.id, set_secrets={"password": PASSWORD}, actor="bob")
    rows = await raw_secrets(database, mine.id)
    for row in rows.values():
        sealed = Sealed.from_text(row.sealed)
        assert sealed.key_id == row.key_id == ring.primary.key_id
        assert row.sealed.startswith("v1.k1.")
        for form in encoded_forms(API_KEY) + encoded_forms(PASSWORD):
            assert form.decode() not in row.sealed
    if database.dialect == "sqlite":
        files = sqlite_files(database)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        async with database.session() as s:
            await s.execute(text("CHECKPOINT"))  # flush shared buffers and WAL to the files
        files = [
            Path(top, name) for top, _, names in os.walk(server.root / "data") for name in names
        ]  # os.walk, unlike rglob, passes over a directory removed while it walks
    contents = {path: data for path in files if (data := read_if_present(path)) is not None}
    assert any(b"api.acme.test" in data for data in contents.values())  # the scan sees the rows
    for path, data in contents.items():
        for form in encoded_forms(API_KEY) + encoded_forms(PASSWORD):
            assert form not in data, f"{form!r} found in {path}"


async def test_a_sealed_value_moved_to_another_connection_does_not_open(
    connections: ConnectionStore, database: Database
) -> None:
    """Copying a ciphertext into another connection's (or org's) row fails to decrypt."""
    victim = await make(connections, org="org_a")
    same_org = await make(connections, org="org_a", name="other", secrets={"apiKey": "x"})
    attacker = await make(connections, org="org_b", secrets={"apiKey": "y"})
    stolen = (await raw_secrets(database, victim.id))["apiKey"].sealed
    for target in (same_org, attacker):
        async with database.transaction() as s:
            await s.execute(
                update(ConnectionSecret)
                .where(ConnectionSecret.connection_id == target.id)
                .values(sealed=stolen)
            )
        with pytest.raises(DecryptionFailed) as caught:
            await connections.decrypt_secrets(target.org_id, target.id)
        assert API_KEY not in str(caught.value)


async def test_every_change_is_audited_without_secrets(
    connections: ConnectionStore, audit: AuditLog, database: Database
) -> None:
    """create, update and delete each write an audit entry with metadata, never a secret."""
    mine = await make(connections, secrets={"apiKey": API_KEY})
    await connections.update(
        "org_a", mine.id, set_secrets={"password": PASSWORD}, config={"v": 2}, actor="bob"
    )
    await connections.delete("org_a", mine.id, "carol")
    entries = list(reversed(await audit.list("org_a")))
    assert [(e.action, e.actor, e.target_id) for e in entries] == [
        ("connection.create", "alice", mine.id),
        ("connection.update", "bob", mine.id),
        ("connection.delete", "carol", mine.id),
    ]
    created, updated, deleted = entries
    assert created.before is None
    assert deleted.after is None
    assert created.after["config"] == CONFIG
    assert created.after["secrets"] == {"apiKey": mine.secrets["apiKey"]}
    assert updated.before["config"] == CONFIG
    assert updated.after["config"] == {"v": 2}
    assert set(updated.after["secrets"]) == {"apiKey", "password"}
    assert (updated.before["revision"], updated.after["revision"]) == (1, 2)
    dumped = json.dumps([e.__dict__ for e in entries], default=str)
    for form in encoded_forms(API_KEY) + encoded_forms(PASSWORD):
        assert form.decode() not in dumped
    assert "v1." not in dumped  # no Sealed text
    assert await audit.list("org_b") == []
    assert (await audit.verify()).ok


async def test_secret_values_must_be_strings(connections: ConnectionStore) -> None:
    """A non-string secret or an empty field name is refused before anything is stored."""
    with pytest.raises(StoreError):
        await make(connections, secrets={"apiKey": 123})  # type: ignore[dict-item]
    with pytest.raises(StoreError):
        await make(connections, secrets={"": "x"})
    assert await connections.list("org_a") == []


async def test_concurrent_creates_of_one_name_leave_one(connections: ConnectionStore) -> None:
    """Of 8 concurrent creates with the same name in one org, one wins; the rest get name_taken."""
    results = await asyncio.gather(*(make(connections) for _ in range(8)), return_exceptions=True)
    created = [r for r in results if isinstance(r, ConnectionRecord)]
    refused = [r for r in results if isinstance(r, StoreConflict)]
    assert (len(created), len(refused)) == (1, 7)
    assert {r.code for r in refused} == {"name_taken"}
    assert len(await connections.list("org_a")) == 1
