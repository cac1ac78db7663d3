"""The ``apiCall`` node: one node, two sources, chosen by ``config.mode`` (SPEC §3)."""

from __future__ import annotations

from callout.engine.http_mode import compile_http_call
from callout.engine.integration_mode import compile_integration_call
from callout.engine.node_config import ConfigReader
from callout.engine.registry import CompiledNode
from callout.spec.flow import NodeSpec
from callout.transport import TransportConfig

__all__ = ["MODES", "ApiCallType"]

MODES = ("http", "integration")


class ApiCallType:
    """Compiles ``apiCall`` nodes; the legacy types adapt their config and come through here."""

    name = "apiCall"

    def __init__(self, limits: TransportConfig) -> None:
        self.limits = limits

    def compile(self, node: NodeSpec) -> CompiledNode:
        reader = ConfigReader(node, self.limits)
        mode = reader.choice("mode", MODES, required=True)
        if mode == "http":
            return compile_http_call(node, reader)
        return compile_integration_call(node, reader)
