"""Saved integrations end to end on both databases: publish, connect, run, change, fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callout.crypto import KeyRing, MasterKey
from callout.errors import InvalidError
from callout.service.connections import create_connection, delete_connection, update_connection
from callout.service.integrations import StoreIntegrationSource
from callout.service.runtime import Runtime, build_runtime
from callout.service.specs import diff_versions, publish_spec, set_spec_status
from callout.settings import Settings
from callout.spec.integration import SpecError
from callout.store.db import Database
from callout.testing import Upstream, serve_app
from tests.store.helpers import encoded_forms, sqlite_files

SECRET = "sk-test-7Hq2mZ9xV4"
SPEC = """
slug: acme-crm
name: Acme CRM
connection:
  config:
    type: object
    required: [baseUrl]
    properties: {{baseUrl: {{type: string}}}}
  secrets: {{apiKey: {{description: API key}}}}
  auth: {{type: bearer, token: "{{{{secret.apiKey}}}}"}}
  allowedOrigins: ["{{{{conn.baseUrl}}}}"]
operations:
  lookupContact:
    method: GET
    url: "{{{{conn.baseUrl}}}}{path}"
    query: {{phone: "{{{{input.phone}}}}"}}
    inputSchema: {{type: object, required: [phone], properties: {{phone: {{type: string}}}}}}
    defaultOutputMappings: {{contactName: "name"}}
"""


def spec(path: str = "/v1/contacts") -> str:
    return SPEC.format(path=path)


@pytest.fixture
async def rt(database: Database, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(data_dir=tmp_path, egress_allow="127.0.0.1/32", cache_ttl_ms=60_000)
    runtime = build_runtime(settings, database, KeyRing([MasterKey.generate("k1")]))
    try:
        yield runtime
    finally:
        await runtime.engine.aclose()


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Upstream, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def contact(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "auth": request.headers.get("Authorization", "")})
        return web.json_response({"name": "Ada", "echo": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/v1/contacts", contact)
    app.router.add_get("/v2/contacts", contact)
    async with serve_app(app) as up:
        yield up, seen


def node(version: int, connection_id: str, **config: Any) -> dict[str, Any]:
    return {
        "id": "lookup",
        "type": "apiCall",
        "config": {
            "mode": "integration",
            "integrationSlug": "acme-crm",
            "integrationVersion": version,
            "operationKey": "lookupContact",
            "connectionId": connection_id,
            "inputs": {"phone": "{{event.from}}"},
            **config,
        },
    }


async def setup(rt: Runtime, up: Upstream, org: str = "org1") -> str:
    await publish_spec(rt, spec(), owner_org=None, actor="test")
    record = await create_connection(
        rt,
        org_id=org,
        integration="acme-crm",
        name="main",
        config={"baseUrl": up.origin},
        secrets={"apiKey": SECRET},
        actor="test",
    )
    return record.id


async def call(
    rt: Runtime, version: int, connection_id: str, org: str = "org1", **config: Any
) -> Any:
    return await rt.engine.run_node(
        node(version, connection_id, **config), event={"from": "+15551230001"}, org_id=org
    )


async def test_a_pinned_flow_keeps_calling_its_version(rt: Runtime, crm: Any) -> None:
    """After version 2 is published with another path, a node pinned to 1 still calls /v1."""
    up, seen = crm
    conn = await setup(rt, up)
    first = await call(rt, 1, conn)
    v2 = await publish_spec(rt, spec("/v2/contacts"), owner_org=None, actor="test")
    again = await call(rt, 1, conn)
    newer = await call(rt, 2, conn)
    assert v2.version == 2
    assert [s["path"] for s in seen] == ["/v1/contacts", "/v1/contacts", "/v2/contacts"]
    assert first.vars["contactName"] == again.vars["contactName"] == "Ada"
    assert newer.vars["integrationOk"] is True
    changes = await diff_versions(rt, "org1", "acme-crm", 1, 2)
    assert [c["path"] for c in changes] == ["operations.lookupContact.url"]


async def test_identical_content_returns_the_existing_version(rt: Runtime) -> None:
    """Publishing the same content again creates nothing."""
    first = await publish_spec(rt, spec(), owner_org=None, actor="test")
    second = await publish_spec(rt, spec(), owner_org=None, actor="test")
    assert (first.version, first.created) == (1, True)
    assert (second.version, second.created) == (1, False)


async def test_a_broken_spec_names_the_path_and_publishes_nothing(rt: Runtime) -> None:
    """A spec with an error is refused with the exact path; the catalog is unchanged."""
    broken = spec().replace("{{input.phone}}", "{{input.phnoe}}")
    with pytest.raises(SpecError) as info:
        await publish_spec(rt, broken, owner_org=None, actor="test")
    assert [p.path for p in info.value.problems] == ["operations.lookupContact.query.phone"]
    assert await rt.specs.list(None) == []


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"integrationSlug": "nope"}, "unknown_integration", "'nope'"),
        ({"integrationVersion": 7}, "unknown_version", "version 7"),
        ({"operationKey": "zap"}, "unknown_operation", "zap"),
        ({"inputs": {}}, "input_invalid", "phone"),
        ("retired", "retired_version", "retired"),
        ("other_org", "connection_other_org", "another org"),
        ("deleted", "connection_deleted", "deleted"),
        ("other_integration", "connection_wrong_integration", "other-crm"),
        ({"connectionId": "conn_doesnotexist"}, "connection_missing", "does not exist"),
    ],
)
async def test_pre_flight_failures_from_the_store(
    rt: Runtime, crm: Any, change: Any, code: str, words: str
) -> None:
    """Each pre-flight failure through the store: invalid, status 0, the cause named."""
    up, seen = crm
    conn = await setup(rt, up)
    config: dict[str, Any] = change if isinstance(change, dict) else {}
    org = "org1"
    if change == "retired":
        await set_spec_status(rt, None, "acme-crm", 1, "retired", actor="test")
    elif change == "other_org":
        org = "org2"
    elif change == "deleted":
        await delete_connection(rt, "org1", conn, actor="test")
    elif change == "other_integration":
        other = spec().replace("slug: acme-crm", "slug: other-crm")
        await publish_spec(rt, other, owner_org=None, actor="test")
        record = await create_connection(
            rt,
            org_id="org1",
            integration="other-crm",
            name="o",
            config={"baseUrl": up.origin},
            secrets={"apiKey": SECRET},
            actor="test",
        )
        config = {"connectionId": record.id}
    result = await call(rt, 1, conn, org=org, **config)
    error = result.vars["integrationError"]
    assert (error["outcome"], error["code"]) == ("invalid", code)
    assert words in error["message"]
    assert result.vars["integrationStatus"] == 0
    assert seen == []


async def test_changes_apply_at_once_despite_the_cache(rt: Runtime, crm: Any) -> None:
    """A rotated secret is used by the very next call; a deleted connection fails next."""
    up, seen = crm
    conn = await setup(rt, up)
    await call(rt, 1, conn)
    await update_connection(rt, "org1", conn, actor="test", set_secrets={"apiKey": "sk-new-Q8w7e6"})
    await call(rt, 1, conn)
    await delete_connection(rt, "org1", conn, actor="test")
    gone = await call(rt, 1, conn)
    assert [s["auth"] for s in seen] == [f"Bearer {SECRET}", "Bearer sk-new-Q8w7e6"]
    assert gone.vars["integrationError"]["code"] == "connection_deleted"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_another_replicas_change_is_seen_after_the_ttl(rt: Runtime, crm: Any) -> None:
    """A replica's cache is not told of a change made elsewhere; it re-reads once the TTL is
    over, and not before."""
    up, _ = crm
    conn = await setup(rt, up)
    clock = ManualClock()
    replica = StoreIntegrationSource(rt.specs, rt.connections, ttl_s=5.0, clock=clock)
    assert (await replica.connection("org1", conn)).secrets["apiKey"] == SECRET
    await update_connection(
        rt, "org1", conn, actor="other", set_secrets={"apiKey": "sk-new-Q8w7e6"}
    )
    clock.now += 4.9
    assert (await replica.connection("org1", conn)).secrets["apiKey"] == SECRET
    clock.now += 0.2
    assert (await replica.connection("org1", conn)).secrets["apiKey"] == "sk-new-Q8w7e6"
    await set_spec_status(rt, None, "acme-crm", 1, "retired", actor="other")
    clock.now += 5.1
    with pytest.raises(InvalidError, match="retired"):
        await replica.spec("org1", "acme-crm", 1)


async def test_a_stale_entry_is_re_read_once_however_many_calls_find_it(
    rt: Runtime, crm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a TTL expiry under load, the concurrent calls share one query per entry instead of
    each sending its own."""
    up, _ = crm
    conn = await setup(rt, up)
    clock = ManualClock()
    replica = StoreIntegrationSource(rt.specs, rt.connections, ttl_s=5.0, clock=clock)
    await replica.spec("org1", "acme-crm", 1)
    await replica.connection("org1", conn)
    queries: list[str] = []
    for store, name in [(rt.specs, "status"), (rt.specs, "get"), (rt.connections, "revision")]:
        monkeypatch.setattr(store, name, counted(getattr(store, name), name, queries))
    clock.now += 6
    specs = await asyncio.gather(*(replica.spec("org1", "acme-crm", 1) for _ in range(50)))
    conns = await asyncio.gather(*(replica.connection("org1", conn) for _ in range(50)))
    assert sorted(queries) == ["revision", "status"]
    assert {s.version for s in specs} == {1}
    assert {c.secrets["apiKey"] for c in conns} == {SECRET}


async def test_a_refresh_re_reads_only_the_spec_status(rt: Runtime, crm: Any) -> None:
    """After the TTL a version's status is re-read, never its content (which cannot change): an
    unchanged version is the same object as before (nodes keep what they bound to it), and a
    status set by another replica is seen with the same compiled spec."""
    up, _ = crm
    await setup(rt, up)
    clock = ManualClock()
    replica = StoreIntegrationSource(rt.specs, rt.connections, ttl_s=5.0, clock=clock)
    first = await replica.spec("org1", "acme-crm", 1)
    clock.now += 6
    assert await replica.spec("org1", "acme-crm", 1) is first
    await set_spec_status(rt, None, "acme-crm", 1, "deprecated", actor="other")
    assert await replica.spec("org1", "acme-crm", 1) is first  # within the TTL
    clock.now += 6
    deprecated = await replica.spec("org1", "acme-crm", 1)
    assert deprecated.status == "deprecated"
    assert deprecated.compiled is first.compiled
    assert first.status == "active"


def counted(
    method: Callable[..., Awaitable[Any]], name: str, log: list[str]
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        log.append(name)
        return await method(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("config", "secrets", "field"),
    [
        ({}, {"apiKey": SECRET}, "config.baseUrl"),
        ({"baseUrl": 5}, {"apiKey": SECRET}, "config.baseUrl"),
        ({"baseUrl": "http://x.test"}, {"apiKey": "abc"}, "secrets.apiKey"),
        ({"baseUrl": "http://x.test"}, {"apiKey": SECRET, "extra": "zzzz"}, "secrets.extra"),
        ({"baseUrl": "http://x.test"}, {}, "secrets.apiKey"),
    ],
)
async def test_bad_connections_are_refused_naming_the_field(
    rt: Runtime, config: dict[str, Any], secrets: dict[str, str], field: str
) -> None:
    """Config against the connection schema and every secret are checked; nothing is stored."""
    await publish_spec(rt, spec(), owner_org=None, actor="test")
    with pytest.raises(InvalidError) as info:
        await create_connection(
            rt,
            org_id="org1",
            integration="acme-crm",
            name="c",
            config=config,
            secrets=secrets,
            actor="test",
        )
    assert info.value.field == field
    assert await rt.connections.list("org1") == []


async def test_no_secret_in_the_database_file_or_the_logs(
    rt: Runtime, crm: Any, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """After creating and using a connection, neither the database files nor logs hold it."""
    caplog.set_level(logging.DEBUG)
    up, _ = crm
    conn = await setup(rt, up)
    result = await call(rt, 1, conn)
    assert result.vars["integrationOk"] is True
    logged = caplog.text.encode()
    stored = (
        b"".join(path.read_bytes() for path in sqlite_files(database))
        if database.dialect == "sqlite"
        else b""
    )
    for form in encoded_forms(SECRET):
        assert form not in logged
        assert form not in stored
    audit = list(await rt.audit.list(None, 100))
    assert SECRET not in repr(audit)
