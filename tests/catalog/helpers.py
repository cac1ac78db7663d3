"""Helpers for the catalog tests: load a spec from ``integrations/`` and run one operation.

Each catalog test runs a real aiohttp server on 127.0.0.1 that checks requests the way the real
API does and answers with the API's documented shapes; the engine's egress guard admits
127.0.0.1 here only, as in the engine tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callout.engine.engine import Engine, NodeRunResult
from callout.engine.services import EngineConfig
from callout.engine.sources import InMemoryIntegrations
from callout.guard import EgressPolicy
from callout.integration import CompiledSpec, compile_spec
from callout.spec.integration import load_spec_text

CATALOG = Path(__file__).resolve().parents[2] / "integrations"
LOOPBACK = EgressPolicy.from_entries(["127.0.0.1/32"])
ORG = "org1"
CONNECTION = "conn_catalog"


def catalog_files() -> list[Path]:
    """Every spec of the catalog, YAML or JSON."""
    return sorted(p for p in CATALOG.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def load(name: str) -> dict[str, Any]:
    """The spec document of ``integrations/<name>.yaml``, as the catalog publishes it."""
    path = CATALOG / f"{name}.yaml"
    return load_spec_text(path.read_text(encoding="utf-8"), source=path.name)


def compiled(name: str) -> CompiledSpec:
    return compile_spec(load(name))


def node(
    slug: str,
    operation: str,
    inputs: Mapping[str, Any],
    **config: Any,
) -> dict[str, Any]:
    """An apiCall node in integration mode pinned to version 1 of ``slug``."""
    on = config.pop("on", {})
    base = {
        "mode": "integration",
        "integrationSlug": slug,
        "integrationVersion": 1,
        "operationKey": operation,
        "connectionId": CONNECTION,
        "inputs": dict(inputs),
    }
    return {"id": "call", "type": "apiCall", "config": {**base, **config}, "on": on}


async def run_operation(
    name: str,
    operation: str,
    inputs: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    event: Mapping[str, Any] | None = None,
    vars: Mapping[str, Any] | None = None,
    **node_config: Any,
) -> NodeRunResult:
    """Publish the catalog spec as version 1, add a connection (its config checked against the
    spec's schema, as the service does) and run one operation of it."""
    document = load(name)
    source = InMemoryIntegrations()
    spec = source.add_spec(document, 1).compiled
    spec.validate_config(config)
    source.add_connection(CONNECTION, ORG, spec.slug, config, secrets)
    apicall = node(spec.slug, operation, inputs, **node_config)
    async with Engine(EngineConfig(egress=LOOPBACK), integrations=source) as engine:
        return await engine.run_node(apicall, event=event, vars=vars, org_id=ORG)


def shown(result: NodeRunResult) -> str:
    """Everything run history would show of the node, as text."""
    return json.dumps(result.event.as_dict())


def assert_hidden(result: NodeRunResult, *secrets: str) -> None:
    """No secret appears in the node's history event, as is or base64-encoded."""
    text = shown(result)
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, exactly as sent."""
    if header is None or not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ")


def basic(header: str | None) -> tuple[str, str] | None:
    """The (username, password) of an ``Authorization: Basic`` header (RFC 7617)."""
    if header is None or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
    except ValueError:
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None
