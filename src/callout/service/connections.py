"""Creating, changing and testing connections: one org's credentials for one integration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from callout.engine.engine import NodeRunResult
from callout.errors import InvalidError
from callout.integration import CompiledSpec
from callout.scrub import validate_secret
from callout.service.runtime import Runtime
from callout.store.connections import ConnectionRecord
from callout.store.errors import NotFound
from callout.store.specs import PublishedSpec

__all__ = ["create_connection", "delete_connection", "test_connection", "update_connection"]


async def _latest(rt: Runtime, org_id: str, slug: str) -> tuple[PublishedSpec, CompiledSpec]:
    published = await rt.specs.get(org_id, slug)
    if published is None:
        raise NotFound(
            f"no integration {slug!r} is published for org {org_id!r}; publish its spec first",
            field="integration",
        )
    return published, rt.source.compiled(published)


def _check_secrets(spec: CompiledSpec, secrets: Mapping[str, str], *, partial: bool) -> None:
    for name, value in secrets.items():
        if name not in spec.secret_names:
            declared = ", ".join(sorted(spec.secret_names)) or "none"
            raise InvalidError(
                f"secret {name!r} is not declared by integration {spec.slug!r} "
                f"(declared: {declared})",
                code="unknown_secret",
                field=f"secrets.{name}",
            )
        if not isinstance(value, str):
            raise InvalidError(f"secret {name!r} must be a string", field=f"secrets.{name}")
        try:
            validate_secret(name, value)
        except InvalidError as exc:
            exc.field = f"secrets.{name}"  # where it sits in the request
            raise
    missing = sorted(spec.secret_names - set(secrets))
    if missing and not partial:
        raise InvalidError(
            f"integration {spec.slug!r} needs the secret(s) {', '.join(missing)}",
            code="missing_secret",
            field=f"secrets.{missing[0]}",
        )


async def create_connection(
    rt: Runtime,
    *,
    org_id: str,
    integration: str,
    name: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    actor: str,
) -> ConnectionRecord:
    """Check the config against the integration's connection schema and every secret, then
    store the connection with its secrets encrypted. Nothing is stored when a check fails."""
    _, spec = await _latest(rt, org_id, integration)
    spec.validate_config(dict(config))
    _check_secrets(spec, secrets, partial=False)
    return await rt.connections.create(
        org_id, integration, name, dict(config), dict(secrets), actor
    )


async def update_connection(
    rt: Runtime,
    org_id: str,
    connection_id: str,
    *,
    actor: str,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    set_secrets: Mapping[str, str] | None = None,
    unset_secrets: Iterable[str] = (),
) -> ConnectionRecord:
    """Change a connection; the engine's caches forget it at once."""
    record = await rt.connections.get(org_id, connection_id)
    if record is None:
        raise NotFound(f"connection {connection_id!r} not found in org {org_id!r}")
    _, spec = await _latest(rt, org_id, record.integration_slug)
    if config is not None:
        spec.validate_config(dict(config))
    _check_secrets(spec, set_secrets or {}, partial=True)
    updated = await rt.connections.update(
        org_id,
        connection_id,
        name=name,
        config=dict(config) if config is not None else None,
        set_secrets=dict(set_secrets) if set_secrets else None,
        unset_secrets=unset_secrets,
        actor=actor,
    )
    _forget(rt, connection_id)
    return updated


async def delete_connection(rt: Runtime, org_id: str, connection_id: str, *, actor: str) -> None:
    """Delete a connection (its secrets are erased); flows using it then fail as invalid."""
    await rt.connections.delete(org_id, connection_id, actor)
    _forget(rt, connection_id)


def _forget(rt: Runtime, connection_id: str) -> None:
    rt.source.forget_connection(connection_id)
    rt.engine.services.oauth.forget(connection_id)


async def test_connection(rt: Runtime, org_id: str, connection_id: str) -> NodeRunResult:
    """Run the integration's ``test`` operation with this connection ("test connection")."""
    record = await rt.connections.get(org_id, connection_id)
    if record is None:
        raise NotFound(f"connection {connection_id!r} not found in org {org_id!r}")
    published, spec = await _latest(rt, org_id, record.integration_slug)
    if spec.test_operation is None:
        raise InvalidError(
            f"integration {spec.slug!r} declares no test operation (connection.test)",
            code="no_test_operation",
        )
    test = published.document.get("connection", {}).get("test", {})
    node = {
        "id": "connectionTest",
        "type": "apiCall",
        "config": {
            "mode": "integration",
            "integrationSlug": spec.slug,
            "integrationVersion": published.version,
            "operationKey": spec.test_operation,
            "connectionId": connection_id,
            "inputs": test.get("inputs") or {},
        },
    }
    return await rt.engine.run_node(node, org_id=org_id)
