"""apiCall in mode integration against real upstreams, with specs and connections in memory."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.engine.sources import InMemoryIntegrations
from callout.guard import EgressPolicy
from callout.testing import Upstream, serve_app

API_KEY = "sk-live-4f9a2c7e1b"
LOOPBACK = EgressPolicy.from_entries(["127.0.0.1/32"])


def crm_spec(path: str = "/v2/contacts", auth: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "slug": "acme-crm",
        "name": "Acme CRM",
        "connection": {
            "config": {
                "type": "object",
                "required": ["baseUrl"],
                "properties": {"baseUrl": {"type": "string"}, "accountId": {"type": "string"}},
            },
            "secrets": {"apiKey": {"description": "API key"}},
            "auth": auth or {"type": "bearer", "token": "{{secret.apiKey}}"},
            "allowedOrigins": ["{{conn.baseUrl}}"],
        },
        "operations": {
            "lookupContact": {
                "summary": "Find a contact by phone",
                "method": "GET",
                "url": "{{conn.baseUrl}}" + path,
                "query": {"phone": "{{input.phone}}", "account": "{{conn.accountId}}"},
                "headers": {"Accept": "application/json"},
                "inputSchema": {
                    "type": "object",
                    "required": ["phone"],
                    "properties": {"phone": {"type": "string", "pattern": "^\\+[0-9]+$"}},
                },
                "defaultOutputMappings": {
                    "contactId": "results[0].id",
                    "contactName": "results[0].name",
                },
                "transform": "{vip: results[0].tier == 'gold'}",
            },
            "elsewhere": {
                "method": "GET",
                "url": "http://{{input.host}}/steal",
                "inputSchema": {"type": "object", "properties": {"host": {"type": "string"}}},
            },
        },
    }


def crm_app(seen: list[dict[str, Any]]) -> web.Application:
    async def contacts(request: web.Request) -> web.Response:
        seen.append(
            {"path": request.path, "query": dict(request.query), "headers": dict(request.headers)}
        )
        tier = "gold" if request.query.get("phone") == "+15551230001" else "silver"
        return web.json_response(
            {
                "results": [{"id": "c-1", "name": "Ada", "tier": tier}],
                "echo": {
                    "auth": request.headers.get("Authorization"),
                    "key": request.query.get("api_key"),
                },
            }
        )

    app = web.Application()
    app.router.add_get("/v1/contacts", contacts)
    app.router.add_get("/v2/contacts", contacts)
    return app


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Upstream, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    async with serve_app(crm_app(seen)) as up:
        yield up, seen


def node(**config: Any) -> dict[str, Any]:
    base = {
        "mode": "integration",
        "integrationSlug": "acme-crm",
        "integrationVersion": 1,
        "operationKey": "lookupContact",
        "connectionId": "conn_a",
        "inputs": {"phone": "{{event.from}}"},
    }
    return {"id": "lookup", "type": "apiCall", "config": {**base, **config}}


def source_for(
    up: Upstream, spec: dict[str, Any] | None = None, secrets: dict[str, str] | None = None
) -> InMemoryIntegrations:
    """org1's spec (acme-crm version 1) and connection conn_a pointing at ``up``."""
    source = InMemoryIntegrations()
    source.add_spec(spec or crm_spec(), 1, owner_org="org1")
    source.add_connection(
        "conn_a",
        "org1",
        "acme-crm",
        {"baseUrl": up.origin, "accountId": "acct 7"},
        secrets or {"apiKey": API_KEY},
    )
    return source


async def run(
    source: InMemoryIntegrations,
    config: dict[str, Any] | None = None,
    phone: str = "+15551230001",
    org: str = "org1",
) -> Any:
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        return await engine.run_node(node(**(config or {})), event={"from": phone}, org_id=org)


async def test_operation_runs_with_auth_query_and_mappings(crm: Any) -> None:
    """Inputs and conn render into the request, the key goes as bearer, outputs map into vars."""
    up, seen = crm
    result = await run(source_for(up), {"outputMappings": {"contactName": "results[0].tier"}})
    assert seen[0]["query"] == {"phone": "+15551230001", "account": "acct 7"}
    assert seen[0]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (200, True, None)
    assert v["contactId"] == "c-1"
    assert v["contactName"] == "gold"  # the node's mapping wins over the default
    assert v["vip"] is True


@pytest.mark.parametrize("failing", [False, True])
async def test_cases_read_the_flows_scopes_not_input_conn_or_secret(
    crm: Any, failing: bool
) -> None:
    """A case on ``secret``, ``input`` or ``conn`` reads the flow's vars of that name, whether
    the call was sent or failed before sending: the operation's scopes never reach routing."""
    up, _ = crm
    cases = [
        {"path": name, "op": "exists", "nodeId": f"via-{name}"}
        for name in ("secret", "input", "conn")
    ] + [{"path": "outcome", "op": "exists", "nodeId": "fallback"}]
    phone = "not a phone" if failing else "+15551230001"
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source_for(up)) as engine:
        result = await engine.run_node(
            node(cases=cases), event={"from": phone}, vars={"conn": "x"}, org_id="org1"
        )
        unset = await engine.run_node(node(cases=cases), event={"from": phone}, org_id="org1")
    assert result.vars["integrationOk"] is not failing
    assert result.route == "via-conn"
    assert unset.route == "fallback"


async def test_secrets_never_reach_vars_output_or_history(crm: Any) -> None:
    """The upstream echoes the key; the node's event and the run's output never show it."""
    up, _ = crm
    source = source_for(up)
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        flow = {
            "id": "f",
            "nodes": [{"id": "s", "type": "onFlowStart", "on": {"__next": "lookup"}}, node()],
        }
        result = await engine.run_flow(flow, event={"from": "+15551230001"}, org_id="org1")
    shown = json.dumps(result.as_dict()) + json.dumps([e.as_dict() for e in result.events])
    assert API_KEY not in shown
    assert base64.b64encode(API_KEY.encode()).decode() not in shown


async def test_a_pinned_version_keeps_its_endpoint(crm: Any) -> None:
    """Publishing version 2 with another path changes nothing for a node pinned to 1."""
    up, seen = crm
    source = source_for(up, crm_spec("/v1/contacts"))
    source.add_spec(crm_spec("/v2/contacts"), 2, owner_org="org1")
    await run(source)
    await run(source, {"integrationVersion": 2})
    assert [s["path"] for s in seen] == ["/v1/contacts", "/v2/contacts"]


@pytest.mark.parametrize(
    ("auth", "check"),
    [
        (
            {"type": "basic", "username": "u", "password": "{{secret.apiKey}}"},
            lambda s: (
                s["headers"]["Authorization"]
                == "Basic " + base64.b64encode(f"u:{API_KEY}".encode()).decode()
            ),
        ),
        (
            {"type": "header", "name": "X-Api-Key", "value": "{{secret.apiKey}}"},
            lambda s: s["headers"]["X-Api-Key"] == API_KEY,
        ),
        (
            {"type": "query", "name": "api_key", "value": "{{secret.apiKey}}"},
            lambda s: s["query"]["api_key"] == API_KEY,
        ),
        ({"type": "none"}, lambda s: "Authorization" not in s["headers"]),
    ],
)
async def test_auth_kinds_reach_the_upstream(crm: Any, auth: dict[str, Any], check: Any) -> None:
    """basic, header, query and none each put the credential where the API expects it."""
    up, seen = crm
    result = await run(source_for(up, crm_spec(auth=auth)))
    assert result.vars["integrationOk"] is True
    assert check(seen[0])


@pytest.mark.parametrize(
    ("config", "prepare", "code", "words"),
    [
        ({"integrationSlug": "nope"}, None, "unknown_integration", "'nope'"),
        ({"integrationVersion": 9}, None, "unknown_version", "version 9"),
        ({"operationKey": "deleteAll"}, None, "unknown_operation", "deleteAll"),
        ({}, "retire", "retired_version", "retired"),
        ({"connectionId": "conn_b"}, "other_org", "connection_other_org", "another org"),
        (
            {"connectionId": "conn_c"},
            "other_integration",
            "connection_wrong_integration",
            "zen-desk",
        ),
        ({}, "delete", "connection_deleted", "deleted"),
        ({"connectionId": "conn_zzz"}, None, "connection_missing", "does not exist"),
        ({"inputs": {"phone": "not a phone"}}, None, "input_invalid", "inputs.phone"),
        ({"inputs": {}}, None, "input_invalid", "phone"),
    ],
)
async def test_pre_flight_failures_are_invalid_with_status_0(
    crm: Any, config: dict[str, Any], prepare: str | None, code: str, words: str
) -> None:
    """Each pre-flight failure: outcome invalid, status 0, a message naming the cause, no call."""
    up, seen = crm
    source = source_for(up)
    if prepare == "retire":
        source.add_spec(crm_spec(), 1, owner_org="org1", status="retired")
    elif prepare == "other_org":
        source.add_connection(
            "conn_b", "org2", "acme-crm", {"baseUrl": up.origin}, {"apiKey": "k" * 8}
        )
    elif prepare == "other_integration":
        source.add_connection(
            "conn_c", "org1", "zen-desk", {"baseUrl": up.origin}, {"apiKey": "k" * 8}
        )
    elif prepare == "delete":
        source.delete_connection("conn_a")
    result = await run(source, config)
    error = result.vars["integrationError"]
    assert error["outcome"] == "invalid"
    assert error["code"] == code
    assert words in error["message"]
    assert result.vars["integrationStatus"] == 0
    assert result.vars["integrationOk"] is False
    assert seen == []


async def test_another_orgs_private_spec_is_unknown(crm: Any) -> None:
    """An org cannot run another org's private integration."""
    up, _ = crm
    result = await run(source_for(up), org="org2")
    assert result.vars["integrationError"]["code"] == "unknown_integration"


async def test_a_secret_may_not_go_outside_allowed_origins(crm: Any) -> None:
    """An operation steered to another origin while carrying the key is blocked, not sent."""
    up, seen = crm
    result = await run(
        source_for(up), {"operationKey": "elsewhere", "inputs": {"host": f"localhost:{up.port}"}}
    )
    assert result.vars["integrationError"]["outcome"] == "blocked"
    assert seen == []


async def test_deprecated_version_runs_and_warns(crm: Any) -> None:
    """A deprecated version still runs; its event carries a warning."""
    up, _ = crm
    source = source_for(up)
    source.add_spec(crm_spec(), 1, owner_org="org1", status="deprecated")
    result = await run(source)
    assert result.vars["integrationOk"] is True
    assert "deprecated" in result.event.details()["warnings"][0]


async def test_mapped_vars_are_null_when_no_response_came(crm: Any) -> None:
    """Without a response every mapped var is set to null, so no stale value survives."""
    up, _ = crm
    result = await run(source_for(up), {"inputs": {}})
    assert result.vars["contactId"] is None
    assert result.vars["contactName"] is None


def oauth_spec() -> dict[str, Any]:
    spec = copy.deepcopy(crm_spec())
    spec["connection"]["secrets"] = {"clientSecret": {"description": "client secret"}}
    spec["connection"]["auth"] = {
        "type": "oauth2ClientCredentials",
        "tokenUrl": "{{conn.baseUrl}}/oauth/token",
        "clientId": "client-1",
        "clientSecret": "{{secret.clientSecret}}",
        "scope": "contacts.read",
    }
    return spec


async def test_oauth2_token_is_fetched_once_and_shared(crm: Any) -> None:
    """Concurrent calls share one token fetch; the token is sent as bearer and scrubbed."""
    _, seen = crm
    grants: list[dict[str, str]] = []
    arrived, gate = asyncio.Event(), asyncio.Event()

    async def token(request: web.Request) -> web.Response:
        grants.append(dict(await request.post()))
        arrived.set()
        await gate.wait()  # hold the token back until every call is waiting for it
        return web.json_response({"access_token": "tok-abcdef-123", "expires_in": 3600})

    app = crm_app(seen)
    app.router.add_post("/oauth/token", token)
    async with serve_app(app) as oauth_up:
        source = source_for(oauth_up, oauth_spec(), {"clientSecret": "cs-very-secret"})
        async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
            calls = [
                engine.run_node(node(), event={"from": "+15551230001"}, org_id="org1")
                for _ in range(5)
            ]
            tasks = [asyncio.ensure_future(c) for c in calls]
            await arrived.wait()
            gate.set()
            results = await asyncio.gather(*tasks)
            again = await engine.run_node(node(), event={"from": "+1555"}, org_id="org1")
    assert len(grants) == 1
    assert grants[0] == {"grant_type": "client_credentials", "scope": "contacts.read"}
    assert [r.vars["integrationError"] for r in results] == [None] * 5
    assert again.vars["integrationOk"]
    assert seen[-1]["headers"]["Authorization"] == "Bearer tok-abcdef-123"
    assert "tok-abcdef-123" not in json.dumps(results[0].event.as_dict())


async def test_oauth2_token_refused_routes_as_4xx() -> None:
    """A token endpoint that refuses the client gives outcome 4xx and says why."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_client"}, status=401)

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    async with serve_app(app) as oauth_up:
        source = source_for(oauth_up, oauth_spec(), {"clientSecret": "cs-very-secret"})
        result = await run(source)
    assert result.vars["integrationError"]["outcome"] == "4xx"
    assert result.vars["integrationError"]["code"] == "oauth_token_failed"


async def test_auth_reading_the_inputs_is_rendered_for_each_call(crm: Any) -> None:
    """Auth that reads only the connection is rendered once per connection and reused; an
    operation's auth that also reads the inputs is rendered per call, each call its own."""
    up, seen = crm
    spec = crm_spec()
    spec["operations"]["lookupContact"]["auth"] = {
        "type": "header",
        "name": "X-Api-Key",
        "value": "{{secret.apiKey}}:{{input.phone}}",
    }
    source = source_for(up, spec)
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        for phone in ("+15551230001", "+15551230002"):
            result = await engine.run_node(node(), event={"from": phone}, org_id="org1")
            assert result.vars["integrationOk"] is True
    assert [s["headers"]["X-Api-Key"] for s in seen] == [
        f"{API_KEY}:+15551230001",
        f"{API_KEY}:+15551230002",
    ]


async def test_auth_reading_only_the_connection_reaches_every_call(crm: Any) -> None:
    """The auth rendered once per connection goes with every call, and stays out of history."""
    up, seen = crm
    auth = {"type": "basic", "username": "{{conn.accountId}}", "password": "{{secret.apiKey}}"}
    source = source_for(up, crm_spec(auth=auth))
    expected = "Basic " + base64.b64encode(f"acct 7:{API_KEY}".encode()).decode()
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        results = [
            await engine.run_node(node(), event={"from": "+1555123000" + str(i)}, org_id="org1")
            for i in range(3)
        ]
    assert [s["headers"]["Authorization"] for s in seen] == [expected] * 3
    for result in results:
        shown = json.dumps(result.event.as_dict())
        assert API_KEY not in shown
        assert expected.removeprefix("Basic ") not in shown


async def test_a_node_follows_its_source_between_calls(crm: Any) -> None:
    """What a prepared node keeps between calls is dropped when the source answers with a
    new connection revision, a deprecated spec, or a deleted connection."""
    up, seen = crm
    source = source_for(up)
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        prepared = engine.prepare_node(node())

        async def call() -> Any:
            return await engine.run_node(prepared, event={"from": "+15551230001"}, org_id="org1")

        first = await call()
        source.add_connection(
            "conn_a", "org1", "acme-crm", {"baseUrl": up.origin, "accountId": "acct 8"},
            {"apiKey": "sk-live-rotated-9d"}, revision=1,
        )  # fmt: skip
        rotated = await call()
        source.add_spec(crm_spec(), 1, owner_org="org1", status="deprecated")
        deprecated = await call()
        source.delete_connection("conn_a")
        deleted = await call()
    assert first.vars["contactId"] == rotated.vars["contactId"] == "c-1"
    assert [s["query"]["account"] for s in seen] == ["acct 7", "acct 8", "acct 8"]
    assert [s["headers"]["Authorization"] for s in seen][1:] == ["Bearer sk-live-rotated-9d"] * 2
    assert "warnings" not in rotated.event.details()
    assert "deprecated" in deprecated.event.details()["warnings"][0]
    assert deleted.vars["integrationStatus"] == 0
    assert deleted.vars["integrationError"]["code"] == "connection_deleted"
    assert "warnings" not in deleted.event.details()
    assert len(seen) == 3
