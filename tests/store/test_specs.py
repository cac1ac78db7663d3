"""Tests for callout.store.specs: numbering, identical content, ownership, visibility, status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callout.crypto import KeyRing
from callout.store.audit import AuditLog
from callout.store.db import Database
from callout.store.errors import Forbidden, NotFound, StoreConflict, StoreError
from callout.store.specs import PublishedSpec, SpecStore
from tests.store.helpers import content_hash, spec_doc


async def publish(
    specs: SpecStore, doc: dict[str, Any], owner: str | None = None, actor: str = "alice"
) -> PublishedSpec:
    return await specs.publish(
        owner_org=owner, document=doc, content_hash=content_hash(doc), actor=actor
    )


async def test_versions_are_numbered_per_slug(specs: SpecStore) -> None:
    """Each new content of a slug gets the next number; other slugs count on their own."""
    first = await publish(specs, spec_doc(rev=1))
    second = await publish(specs, spec_doc(rev=2))
    other = await publish(specs, spec_doc("globex", "Globex"))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.created
    assert second.created
    assert second.status == "active"
    assert second.created_by == "alice"
    assert second.created_at.tzinfo is not None


async def test_the_document_round_trips(specs: SpecStore) -> None:
    """The stored document, name and hash are what was published."""
    doc = spec_doc(summary="Ünïcode ✓", nested={"b": [1, 2.5, None, True], "a": "x"})
    published = await publish(specs, doc)
    fetched = await specs.get(None, "acme-crm", 1)
    assert fetched is not None
    assert fetched.document == doc == published.document
    assert list(fetched.document) == list(doc)  # key order kept
    assert (fetched.name, fetched.content_hash) == ("Acme CRM", content_hash(doc))


async def test_identical_content_returns_the_existing_version(
    specs: SpecStore, audit: AuditLog
) -> None:
    """Publishing the same content again returns that version, created=False, and no audit."""
    doc = spec_doc()
    first = await publish(specs, doc)
    await publish(specs, spec_doc(rev=2))
    again = await publish(specs, doc, actor="bob")
    assert (again.version, again.created, again.created_by) == (1, False, "alice")
    assert [e.action for e in await audit.list(None)] == ["spec.publish", "spec.publish"]
    assert again.content_hash == first.content_hash


async def test_a_document_without_slug_or_name_is_refused(specs: SpecStore) -> None:
    """A document needs a string slug and name."""
    with pytest.raises(StoreError) as caught:
        await publish(specs, {"name": "x"})
    assert (caught.value.code, caught.value.field) == ("invalid_document", "slug")
    with pytest.raises(StoreError):
        await publish(specs, {"slug": "x", "name": ""})


@pytest.mark.parametrize(
    ("first_owner", "second_owner"),
    [(None, "org_a"), ("org_a", None), ("org_a", "org_b")],
)
async def test_a_slug_belongs_to_one_owner(
    specs: SpecStore, first_owner: str | None, second_owner: str | None
) -> None:
    """Once the catalog or an org holds a slug, nobody else can publish under it."""
    await publish(specs, spec_doc(), owner=first_owner)
    with pytest.raises(StoreConflict) as caught:
        await publish(specs, spec_doc(rev=2), owner=second_owner)
    assert caught.value.code == "slug_taken"
    with pytest.raises(StoreConflict):  # even with identical content
        await publish(specs, spec_doc(), owner=second_owner)
    assert "org_a" not in caught.value.message
    assert "org_b" not in caught.value.message


async def test_visibility_is_catalog_plus_own_org(specs: SpecStore) -> None:
    """An org sees the catalog and its own specs; never another org's."""
    await publish(specs, spec_doc("catalog-api", "Catalog"))
    await publish(specs, spec_doc("a-private", "A"), owner="org_a")
    await publish(specs, spec_doc("b-private", "B"), owner="org_b")
    assert {s.slug for s in await specs.list("org_a")} == {"catalog-api", "a-private"}
    assert {s.slug for s in await specs.list("org_b")} == {"catalog-api", "b-private"}
    assert {s.slug for s in await specs.list(None)} == {"catalog-api"}
    assert await specs.get("org_b", "a-private", 1) is None
    assert await specs.get("org_b", "a-private") is None
    assert await specs.get(None, "a-private") is None
    assert await specs.get("org_a", "a-private", 1) is not None
    assert await specs.get("org_b", "catalog-api", 1) is not None


async def test_list_latest_only_and_get_newest(specs: SpecStore) -> None:
    """latest_only keeps each slug's newest version; get without a version returns it."""
    for rev in range(3):
        await publish(specs, spec_doc(rev=rev))
    await publish(specs, spec_doc("globex", "Globex"))
    every = await specs.list(None)
    assert [(s.slug, s.version) for s in every] == [
        ("acme-crm", 1),
        ("acme-crm", 2),
        ("acme-crm", 3),
        ("globex", 1),
    ]
    latest = await specs.list(None, latest_only=True)
    assert [(s.slug, s.version) for s in latest] == [("acme-crm", 3), ("globex", 1)]
    newest = await specs.get(None, "acme-crm")
    assert newest is not None
    assert newest.version == 3
    assert await specs.get(None, "acme-crm", 9) is None


async def test_status_moves_forward_only(specs: SpecStore, audit: AuditLog) -> None:
    """active -> deprecated -> retired, active -> retired; never back; same status is a no-op."""
    await publish(specs, spec_doc(rev=1))
    await publish(specs, spec_doc(rev=2))
    deprecated = await specs.set_status(None, "acme-crm", 1, "deprecated", "admin")
    assert deprecated.status == "deprecated"
    assert (await specs.set_status(None, "acme-crm", 1, "deprecated", "admin")).status == (
        "deprecated"
    )
    for backwards in ("active",):
        with pytest.raises(StoreConflict) as caught:
            await specs.set_status(None, "acme-crm", 1, backwards, "admin")
        assert caught.value.code == "invalid_transition"
    assert (await specs.set_status(None, "acme-crm", 1, "retired", "admin")).status == "retired"
    for backwards in ("active", "deprecated"):
        with pytest.raises(StoreConflict):
            await specs.set_status(None, "acme-crm", 1, backwards, "admin")
    assert (await specs.set_status(None, "acme-crm", 2, "retired", "admin")).status == "retired"
    with pytest.raises(StoreError) as unknown:
        await specs.set_status(None, "acme-crm", 2, "paused", "admin")
    assert unknown.value.code == "invalid_status"
    actions = [e.action for e in reversed(await audit.list(None))]
    assert actions == [
        "spec.publish",
        "spec.publish",
        "spec.deprecate",
        "spec.retire",
        "spec.retire",
    ]
    entry = (await audit.list(None))[0]
    assert (entry.before["status"], entry.after["status"], entry.actor) == (
        "active",
        "retired",
        "admin",
    )


async def test_only_the_owner_changes_a_status(specs: SpecStore) -> None:
    """An org cannot change a catalog spec or another org's; the platform admin the catalog's."""
    await publish(specs, spec_doc("catalog-api", "Catalog"))
    await publish(specs, spec_doc("a-private", "A"), owner="org_a")
    with pytest.raises(Forbidden):
        await specs.set_status("org_a", "catalog-api", 1, "deprecated", "mallory")
    with pytest.raises(NotFound):
        await specs.set_status("org_b", "a-private", 1, "retired", "mallory")
    with pytest.raises(NotFound):
        await specs.set_status(None, "a-private", 1, "retired", "admin")
    assert (await specs.set_status("org_a", "a-private", 1, "retired", "alice")).status == "retired"
    assert (await specs.set_status(None, "catalog-api", 1, "retired", "admin")).status == "retired"


async def test_publish_writes_an_audit_entry_for_the_owner(
    specs: SpecStore, audit: AuditLog
) -> None:
    """A publish is audited under the owning org with the version and hash."""
    doc = spec_doc()
    await publish(specs, doc, owner="org_a")
    (entry,) = await audit.list("org_a")
    assert (entry.action, entry.target_type, entry.target_id) == (
        "spec.publish",
        "integration_spec",
        "acme-crm@1",
    )
    assert entry.before is None
    assert entry.after["contentHash"] == content_hash(doc)
    assert await audit.list("org_b") == []


async def test_concurrent_publishes_number_without_gaps(specs: SpecStore, audit: AuditLog) -> None:
    """20 concurrent publishes of different content get exactly the versions 1..20."""
    results = await asyncio.gather(*(publish(specs, spec_doc(rev=i)) for i in range(20)))
    assert sorted(r.version for r in results) == list(range(1, 21))
    assert all(r.created for r in results)
    assert len(await specs.list(None)) == 20
    check = await audit.verify()
    assert (check.ok, check.checked) == (True, 20)


async def test_concurrent_identical_publishes_make_one_version(specs: SpecStore) -> None:
    """10 concurrent publishes of the same content make one version; one of them created it."""
    doc = spec_doc()
    results = await asyncio.gather(*(publish(specs, doc) for _ in range(10)))
    assert {r.version for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert len(await specs.list(None)) == 1


async def test_a_colliding_publish_is_retried(
    specs: SpecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version number taken meanwhile hits the UNIQUE constraint and the publish starts over."""
    await publish(specs, spec_doc(rev=1))
    real = SpecStore._next_version
    calls: list[int | None] = []

    async def stale_once(self: SpecStore, latest: int | None) -> int:
        calls.append(latest)
        return 1 if len(calls) == 1 else await real(self, latest)

    monkeypatch.setattr(SpecStore, "_next_version", stale_once)
    second = await publish(specs, spec_doc(rev=2))
    assert (second.version, calls) == (2, [1, 1])


async def test_a_publish_that_keeps_colliding_gives_up(
    specs: SpecStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries are bounded: a publish that always collides ends in StoreConflict."""
    await publish(specs, spec_doc(rev=1))

    async def always_stale(self: SpecStore, latest: int | None) -> int:
        return 1

    monkeypatch.setattr(SpecStore, "_next_version", always_stale)
    with pytest.raises(StoreConflict) as caught:
        await publish(specs, spec_doc(rev=2))
    assert caught.value.code == "publish_conflict"


async def test_two_replicas_publishing_together_number_without_gaps(
    database: Database, ring: KeyRing
) -> None:
    """Two Database handles (two processes) publishing one slug at once share 1..20."""
    other = Database(database.url.render_as_string(hide_password=False))
    try:
        mine, theirs = SpecStore(database, ring), SpecStore(other, ring)
        results = await asyncio.gather(
            *(publish(mine if i % 2 else theirs, spec_doc(rev=i)) for i in range(20))
        )
    finally:
        await other.dispose()
    assert sorted(r.version for r in results) == list(range(1, 21))
