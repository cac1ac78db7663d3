"""Callout: runs the apiCall node of contact-center call flows, safely, bounded and fast.

The public surface for embedding in a flow worker::

    async with Engine(EngineConfig(egress=EgressPolicy.from_entries(["10.0.0.0/8"]))) as engine:
        result = await engine.run_flow(engine.load_flow(flow_json), event={"from": "+15551234"})
"""

from callout.engine.context import NodeEvent, RunContext, Step
from callout.engine.engine import Engine, NodeRunResult, PreparedNode
from callout.engine.registry import NodeRegistry, NodeType, SimpleNodeType
from callout.engine.runner import CompiledFlow, RunResult
from callout.engine.services import EngineConfig, RunLimits
from callout.errors import (
    CalloutError,
    DeadlineExceeded,
    EgressDenied,
    FlowError,
    FlowValidationError,
    InvalidError,
    NetworkError,
    Outcome,
    TemplateError,
)
from callout.guard import EgressPolicy
from callout.spec.flow import NodeSpec
from callout.transport import RetryPolicy, TransportConfig

__all__ = [
    "CalloutError",
    "CompiledFlow",
    "DeadlineExceeded",
    "EgressDenied",
    "EgressPolicy",
    "Engine",
    "EngineConfig",
    "FlowError",
    "FlowValidationError",
    "InvalidError",
    "NetworkError",
    "NodeEvent",
    "NodeRegistry",
    "NodeRunResult",
    "NodeSpec",
    "NodeType",
    "Outcome",
    "PreparedNode",
    "RetryPolicy",
    "RunContext",
    "RunLimits",
    "RunResult",
    "SimpleNodeType",
    "Step",
    "TemplateError",
    "TransportConfig",
]
