"""The legacy ``httpCall`` and ``integration`` node types, run through the apiCall code path.

An adapter, not a second implementation: the legacy config is mapped to an apiCall config
(``spec.legacy``) and compiled by ``ApiCallType``; errors name the legacy node's own fields.
"""

from __future__ import annotations

import dataclasses

from callout.engine.apicall import ApiCallType
from callout.engine.registry import CompiledNode
from callout.errors import FlowValidationError
from callout.spec.flow import NodeSpec
from callout.spec.legacy import apicall_config, legacy_field

__all__ = ["LegacyNodeType"]


class LegacyNodeType:
    """``httpCall`` or ``integration``: same results and routes as the apiCall it maps to."""

    def __init__(self, name: str, apicall: ApiCallType) -> None:
        self.name = name
        self._apicall = apicall

    def compile(self, node: NodeSpec) -> CompiledNode:
        mapped = dataclasses.replace(node, config=apicall_config(self.name, node.config))
        try:
            return self._apicall.compile(mapped)
        except FlowValidationError as exc:
            field = legacy_field(self.name, exc.field) if exc.field else None
            message = legacy_field(self.name, exc.message)
            raise FlowValidationError(
                f"{message} (in a legacy '{self.name}' node)",
                code=exc.code,
                field=field,
                node_id=node.id,
            ) from None
