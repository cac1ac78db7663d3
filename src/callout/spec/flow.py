"""The flow model: parse flow JSON into frozen definitions and check its structure.

This module knows what a flow IS (SPEC §1); it does not know which node types exist (that is the
engine's registry) and it never touches a socket or a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from callout.errors import FlowValidationError

__all__ = ["END", "NEXT", "START_TYPE", "FlowSpec", "NodeSpec", "parse_flow", "parse_node"]

#: The default edge of a node.
NEXT = "__next"
#: The edge target that ends a run.
END = "end"
#: The node type a run starts at.
START_TYPE = "onFlowStart"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node as written: ``{id, type, config, on}`` plus author-only ``_label``/``_note``."""

    id: str
    type: str
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    on: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    label: str | None = None
    note: str | None = None
    #: Where this node sits in the flow document, for error messages (``nodes[3]``).
    where: str = ""


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A structurally valid flow: unique node ids, edges that land, one ``onFlowStart``."""

    id: str
    name: str
    nodes: tuple[NodeSpec, ...]
    start: NodeSpec
    by_id: Mapping[str, NodeSpec] = field(repr=False, default_factory=lambda: _EMPTY)


def parse_flow(data: Mapping[str, Any] | str | bytes) -> FlowSpec:
    """Parse and structurally validate a flow document (JSON text or already-decoded data).

    Raises ``FlowValidationError`` naming the node and the field for: a document that is not an
    object, missing or duplicate node ids, a node without a type, a malformed ``on`` map, an edge
    to a node that does not exist, and a flow with no (or more than one) ``onFlowStart`` node.
    """
    doc = _decode(data)
    flow_id = doc.get("id", "")
    if not isinstance(flow_id, str):
        raise FlowValidationError("flow 'id' must be a string", field="id")
    name = doc.get("name", flow_id)
    if not isinstance(name, str):
        raise FlowValidationError("flow 'name' must be a string", field="name")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise FlowValidationError(
            "a flow needs a non-empty 'nodes' list, starting with an onFlowStart node",
            field="nodes",
        )
    nodes = tuple(parse_node(raw, f"nodes[{i}]") for i, raw in enumerate(raw_nodes))
    by_id: dict[str, NodeSpec] = {}
    for node in nodes:
        if node.id in by_id:
            raise FlowValidationError(
                f"node id '{node.id}' is used twice ({by_id[node.id].where} and {node.where}); "
                "give each node a unique id",
                field=f"{node.where}.id",
                node_id=node.id,
            )
        if node.id == END:
            raise FlowValidationError(
                f"'{END}' is reserved as the edge target that ends a run; rename the node",
                field=f"{node.where}.id",
                node_id=node.id,
            )
        by_id[node.id] = node
    for node in nodes:
        for event, target in node.on.items():
            if target != END and target not in by_id:
                raise FlowValidationError(
                    f"node '{node.id}' has an edge '{event}' to '{target}', which is not a node "
                    f"of this flow; point it at an existing node id or at '{END}'",
                    field=f"{node.where}.on.{event}",
                    node_id=node.id,
                )
        _check_case_targets(node, by_id)
    starts = [n for n in nodes if n.type == START_TYPE]
    if len(starts) != 1:
        found = ", ".join(f"'{n.id}'" for n in starts) or "none"
        raise FlowValidationError(
            f"a flow needs exactly one '{START_TYPE}' node where runs begin (found {found})",
            field="nodes",
        )
    return FlowSpec(
        id=flow_id, name=name, nodes=nodes, start=starts[0], by_id=MappingProxyType(by_id)
    )


def _check_case_targets(node: NodeSpec, by_id: Mapping[str, NodeSpec]) -> None:
    """A case's ``nodeId`` is an edge too: it must land on a node of the flow."""
    cases = node.config.get("cases")
    if not isinstance(cases, list):
        return
    for i, case in enumerate(cases):
        target = case.get("nodeId") if isinstance(case, Mapping) else None
        if isinstance(target, str) and target != END and target not in by_id:
            raise FlowValidationError(
                f"node '{node.id}' has a case routing to '{target}', which is not a node of "
                f"this flow; point it at an existing node id or at '{END}'",
                field=f"{node.where}.config.cases[{i}].nodeId",
                node_id=node.id,
            )


def _decode(data: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise FlowValidationError(f"the flow is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise FlowValidationError("a flow must be a JSON object with 'id', 'name' and 'nodes'")
    return data


def parse_node(raw: Any, where: str = "node") -> NodeSpec:
    """Parse one node's shape (its edges are checked by ``parse_flow``, not here)."""
    if not isinstance(raw, Mapping):
        raise FlowValidationError(
            f"{where} must be an object {{id, type, config, on}}", field=where
        )
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise FlowValidationError(f"{where} needs a non-empty string 'id'", field=f"{where}.id")
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise FlowValidationError(
            f"node '{node_id}' needs a non-empty string 'type'",
            field=f"{where}.type",
            node_id=node_id,
        )
    config = raw.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise FlowValidationError(
            f"node '{node_id}': 'config' must be an object",
            field=f"{where}.config",
            node_id=node_id,
        )
    on = raw.get("on", {})
    if on is None:
        on = {}
    if not isinstance(on, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in on.items()
    ):
        raise FlowValidationError(
            f"node '{node_id}': 'on' must map event names to node ids (strings)",
            field=f"{where}.on",
            node_id=node_id,
        )
    label, note = raw.get("_label"), raw.get("_note")
    return NodeSpec(
        id=node_id,
        type=node_type,
        config=MappingProxyType(dict(config)),
        on=MappingProxyType(dict(on)),
        label=label if isinstance(label, str) else None,
        note=note if isinstance(note, str) else None,
        where=where,
    )
