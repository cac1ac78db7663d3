"""Legacy httpCall and integration nodes: same vars and routes as their migrated apiCall form."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.errors import FlowValidationError
from callout.guard import EgressPolicy
from callout.spec.legacy import migrate_flow
from callout.testing import Upstream, serve_app
from tests.cli_helpers import run_callout
from tests.engine.test_apicall_integration import crm_app, source_for

START = {"id": "start", "type": "onFlowStart", "on": {"__next": "first"}}


def http_call(url: str, **config: Any) -> dict[str, Any]:
    return {
        "id": "first",
        "type": "httpCall",
        "config": {"url": url, **config},
        "on": {"__next": "after"},
    }


def legacy_integration(node_id: str = "first", **config: Any) -> dict[str, Any]:
    base = {
        "integration": "acme-crm",
        "version": 1,
        "operation": "lookupContact",
        "connection": "conn_a",
        "inputs": {"phone": "{{event.from}}"},
    }
    return {
        "id": node_id,
        "type": "integration",
        "config": {**base, **config},
        "on": {"__next": "after"},
    }


AFTER = {
    "id": "after",
    "type": "setVariable",
    "config": {"name": "done", "value": "{{vars.httpStatus | default: 0}}"},
}


def flows(origin: str) -> dict[str, dict[str, Any]]:
    """Flows using the legacy types, by name (the upstream's origin filled in)."""
    return {
        "http-get": {
            "id": "a",
            "nodes": [START, http_call(f"{origin}/v1/contacts?phone={{{{event.from}}}}"), AFTER],
        },
        "http-auth-post": {
            "id": "b",
            "nodes": [
                START,
                http_call(
                    f"{origin}/v2/contacts",
                    method="POST",
                    body={"n": "{{vars.n}}"},
                    headers={"X-Trace": "t-{{vars.n}}"},
                    responseVar="crm",
                    auth={"type": "bearer", "token": "tok-legacy-1"},
                    timeoutMs=2000,
                ),
                AFTER,
            ],
        },
        "http-blocked": {"id": "c", "nodes": [START, http_call("http://10.0.0.1/nowhere"), AFTER]},
        "integration": {
            "id": "d",
            "nodes": [START, legacy_integration(outputs={"who": "results[0].name"}), AFTER],
        },
        "integration-bad-input": {
            "id": "e",
            "nodes": [START, legacy_integration(inputs={"phone": "letters"}), AFTER],
        },
        "mixed": {
            "id": "f",
            "nodes": [
                START,
                http_call(f"{origin}/v1/contacts?phone={{{{event.from}}}}"),
                {
                    "id": "after",
                    "type": "branch",
                    "config": {
                        "cases": [{"path": "httpOk", "op": "eq", "value": True, "nodeId": "crm"}]
                    },
                },
                {**legacy_integration("crm"), "on": {"__next": "end"}},
            ],
        },
    }


@pytest.fixture
async def crm() -> AsyncIterator[Upstream]:
    async with serve_app(crm_app([])) as up:
        yield up


def engine_for(up: Upstream) -> Engine:
    config = EngineConfig(egress=EgressPolicy.from_entries(["127.0.0.1/32"]))
    return Engine(config, integrations=source_for(up))


@pytest.mark.parametrize("name", list(flows("http://x")))
async def test_legacy_and_migrated_flows_give_identical_vars_and_paths(
    crm: Upstream, name: str
) -> None:
    """Running a legacy flow and its migrated form gives the same vars and the same path."""
    legacy = flows(crm.origin)[name]
    migrated, changes = migrate_flow(legacy)
    assert changes
    assert all(n["type"] != "httpCall" and n["type"] != "integration" for n in migrated["nodes"])
    async with engine_for(crm) as engine:
        scopes = {"event": {"from": "+15551230001"}, "vars": {"n": 7}, "org_id": "org1"}
        before = await engine.run_flow(legacy, **scopes)
        after = await engine.run_flow(migrated, **scopes)
    assert before.status == after.status == "completed"
    assert before.path == after.path
    assert before.vars == after.vars


def test_migrating_twice_changes_nothing_the_second_time() -> None:
    """Migration is idempotent: the second pass reports no change and returns an equal flow."""
    once, changes = migrate_flow(flows("http://x")["mixed"])
    twice, again = migrate_flow(once)
    assert len(changes) == 2
    assert again == []
    assert twice == once


def test_migration_renames_integration_fields() -> None:
    """The integration node's keys become the apiCall names; ids and edges are kept."""
    migrated, changes = migrate_flow(flows("http://x")["integration"])
    node = migrated["nodes"][1]
    assert node["id"] == "first"
    assert node["on"] == {"__next": "after"}
    assert node["config"] == {
        "mode": "integration",
        "integrationSlug": "acme-crm",
        "integrationVersion": 1,
        "operationKey": "lookupContact",
        "connectionId": "conn_a",
        "inputs": {"phone": "{{event.from}}"},
        "outputMappings": {"who": "results[0].name"},
    }
    assert "integration -> integrationSlug" in changes[0]


def test_legacy_config_errors_name_the_legacy_field() -> None:
    """A bad legacy node is refused naming its own field, not the apiCall one."""
    doc = {"id": "x", "nodes": [START, legacy_integration(version=0), AFTER]}
    with pytest.raises(FlowValidationError) as info:
        Engine().load_flow(doc)
    assert info.value.field is not None
    assert info.value.field.endswith("config.version")


async def test_flows_migrate_command_rewrites_and_reports(tmp_path: Path) -> None:
    """`callout flows migrate FILE -o OUT` writes apiCall nodes; migrating OUT changes nothing."""
    source, out = tmp_path / "legacy.json", tmp_path / "new.json"
    source.write_text(json.dumps(flows("http://api.example.com")["mixed"]))

    async def migrate(*args: str) -> tuple[int, str]:
        rc, _, err = await run_callout("flows", "migrate", *args)
        return rc, err

    rc, report = await migrate(str(source), "-o", str(out))
    written = out.read_text()
    rc2, report2 = await migrate(str(out))
    assert (rc, rc2) == (0, 0)
    assert "2 node(s) migrated" in report
    assert "httpCall -> apiCall" in report
    assert "nothing changed" in report2
    assert out.read_text() == written
    assert json.loads(written) == migrate_flow(json.loads(source.read_text()))[0]
