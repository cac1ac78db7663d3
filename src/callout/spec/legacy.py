"""The legacy node types ``httpCall`` and ``integration``, as ``apiCall`` configs (SPEC §6).

One mapping serves both the engine (which runs a legacy node through the apiCall code path) and
``callout flows migrate`` (which rewrites the flow file), so the two can never disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = [
    "LEGACY_FIELDS",
    "LEGACY_TYPES",
    "apicall_config",
    "legacy_field",
    "migrate_flow",
]

#: Legacy config key -> apiCall config key, per legacy type. Keys not listed carry over as-is.
LEGACY_FIELDS: Mapping[str, Mapping[str, str]] = {
    "httpCall": {},
    "integration": {
        "integration": "integrationSlug",
        "version": "integrationVersion",
        "operation": "operationKey",
        "connection": "connectionId",
        "outputs": "outputMappings",
    },
}
LEGACY_MODES: Mapping[str, str] = {"httpCall": "http", "integration": "integration"}
LEGACY_TYPES = frozenset(LEGACY_FIELDS)


def apicall_config(legacy_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``apiCall`` config that behaves exactly as this legacy node's config."""
    renames = LEGACY_FIELDS[legacy_type]
    mapped = {renames.get(key, key): copy.deepcopy(value) for key, value in config.items()}
    mapped["mode"] = LEGACY_MODES[legacy_type]
    return mapped


def legacy_field(legacy_type: str, field: str) -> str:
    """Map a field path of the apiCall config back to the legacy node's own key, for errors."""
    for old, new in LEGACY_FIELDS[legacy_type].items():
        marker = f"config.{new}"
        if marker in field:
            return field.replace(marker, f"config.{old}", 1)
    return field


def migrate_flow(document: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Rewrite every legacy node as an ``apiCall`` node; return the new flow and what changed.

    Node ids, edges, ``_label`` and ``_note`` are kept, so paths and history read the same.
    A flow without legacy nodes comes back equal and with no changes (migrating is idempotent).
    """
    migrated = copy.deepcopy(dict(document))
    changes: list[str] = []
    for index, node in enumerate(migrated.get("nodes") or []):
        if not isinstance(node, dict) or node.get("type") not in LEGACY_TYPES:
            continue
        legacy_type = node["type"]
        config = node.get("config") or {}
        node["type"] = "apiCall"
        node["config"] = apicall_config(legacy_type, config)
        renamed = [
            f"{old} -> {new}" for old, new in LEGACY_FIELDS[legacy_type].items() if old in config
        ]
        detail = f" (renamed {', '.join(renamed)})" if renamed else ""
        changes.append(
            f"nodes[{index}] '{node.get('id')}': {legacy_type} -> apiCall mode "
            f"{LEGACY_MODES[legacy_type]}{detail}"
        )
    return migrated, changes
