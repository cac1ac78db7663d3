"""The Python API for embedding Callout in a flow worker: build an ``Engine`` once, run many.

::

    async with Engine(EngineConfig(egress=EgressPolicy.from_entries(["10.1.0.0/16"]))) as engine:
        flow = engine.load_flow(flow_json)            # validated and compiled once
        result = await engine.run_flow(flow, event={"from": "+15551234"})
        print(result.status, result.path, result.vars)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol

from aiohttp.abc import AbstractResolver

from callout.engine.apicall import ApiCallType
from callout.engine.context import NodeEvent, RunContext
from callout.engine.legacy import LegacyNodeType
from callout.engine.nodes import BranchType, OnFlowStartType, SetVariableType
from callout.engine.registry import NodeRegistry, NodeType
from callout.engine.runner import CompiledFlow, RunResult, compile_flow, run_compiled, step_node
from callout.engine.services import EngineConfig, Services
from callout.engine.sources import IntegrationSource
from callout.errors import FlowError
from callout.spec.flow import FlowSpec, NodeSpec, parse_node
from callout.spec.legacy import LEGACY_TYPES
from callout.transport import Transport

__all__ = ["Engine", "HistorySink", "NodeRunResult", "PreparedNode"]

Scope = Mapping[str, Any] | None
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PreparedNode:
    """One node compiled by ``Engine.prepare_node``, ready for ``run_node``."""

    flow: CompiledFlow
    node_id: str


class HistorySink(Protocol):
    """Where ``run_flow`` hands a finished run for its history (``service.history``'s
    recorders): ``record_nowait`` when there is room, else ``record``, which waits for it."""

    def record_nowait(self, result: RunResult, org_id: str | None) -> bool: ...

    async def record(self, result: RunResult, org_id: str | None) -> None: ...


class NodeRunResult(NamedTuple):
    """One node run on its own ("try it"): where it would route, and the vars it set."""

    route: str | None
    case_index: int | None
    vars: dict[str, Any]
    event: NodeEvent


class Engine:
    """Runs flows and single nodes. One engine holds one pooled HTTP client: create it once per
    process (or worker) and close it when done (``aclose`` or ``async with``)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        node_types: tuple[NodeType, ...] = (),
        resolver: AbstractResolver | None = None,
        integrations: IntegrationSource | None = None,
    ) -> None:
        """``node_types`` adds a host platform's own types; ``resolver`` replaces DNS under the
        egress guard (tests, or a platform's own resolver) — every answer is still checked;
        ``integrations`` serves integration-mode nodes (specs and decrypted connections)."""
        self.config = config or EngineConfig()
        self.registry = NodeRegistry()
        for builtin in (
            OnFlowStartType(),
            BranchType(),
            SetVariableType(),
        ):
            self.registry.register(builtin)
        apicall = ApiCallType(self.config.transport)
        self.registry.register(apicall)
        for legacy in LEGACY_TYPES:
            self.registry.register(LegacyNodeType(legacy, apicall))
        for node_type in node_types:
            self.registry.register(node_type)
        self._transport = Transport(self.config.transport, self.config.egress, resolver=resolver)
        self.services = Services(self.config, self._transport, integrations)
        self._deadline_s = self.config.run.deadline_ms / 1000.0

    def load_flow(self, data: Mapping[str, Any] | str | bytes | FlowSpec) -> CompiledFlow:
        """Validate and compile a flow; raises ``FlowValidationError`` naming the node."""
        return compile_flow(data, self.registry)

    async def run_flow(
        self,
        flow: CompiledFlow | Mapping[str, Any] | str | bytes,
        *,
        event: Scope = None,
        vars: Scope = None,
        contact: Scope = None,
        config: Scope = None,
        agent: Scope = None,
        callee: Scope = None,
        org_id: str | None = None,
        history: HistorySink | None = None,
    ) -> RunResult:
        """Run a flow from its ``onFlowStart`` node; a failure is in the result, not raised.

        With ``history``, the finished run is handed to it before this returns (waiting only
        while its queue is full)."""
        compiled = flow if isinstance(flow, CompiledFlow) else self.load_flow(flow)
        ctx = self._context(event, vars, contact, config, agent, callee, org_id)
        result = await run_compiled(compiled, ctx, max_steps=self.config.run.max_steps)
        if history is not None and not history.record_nowait(result, org_id):
            await history.record(result, org_id)  # its queue is full: wait for room
        return result

    def prepare_node(self, node: Mapping[str, Any] | NodeSpec) -> PreparedNode:
        """Validate and compile one node once, to run it many times with ``run_node``: for a host
        platform whose own flow engine hands its apiCall steps to Callout."""
        spec = node if isinstance(node, NodeSpec) else _single_node(node)
        return PreparedNode(
            compile_flow(
                FlowSpec(id="", name="", nodes=(spec,), start=spec, by_id={spec.id: spec}),
                self.registry,
            ),
            spec.id,
        )

    async def run_node(
        self,
        node: Mapping[str, Any] | NodeSpec | PreparedNode,
        *,
        event: Scope = None,
        vars: Scope = None,
        contact: Scope = None,
        config: Scope = None,
        agent: Scope = None,
        callee: Scope = None,
        org_id: str | None = None,
    ) -> NodeRunResult:
        """Run one node against a scope (the node editor's Test button, or a host platform's
        flow engine); where it routes is returned, never followed."""
        prepared = node if isinstance(node, PreparedNode) else self.prepare_node(node)
        ctx = self._context(event, vars, contact, config, agent, callee, org_id)
        result = RunResult("", "", "completed", [], ctx.vars, None)
        try:  # noqa: SIM105  -- contextlib.suppress costs two more calls on every run
            await step_node(prepared.flow, prepared.node_id, ctx, result)
        except FlowError:
            pass  # the failure is recorded in the event
        event_record = result.events[-1]
        event_record.run_scrubber = ctx.run_scrubber()
        return NodeRunResult(event_record.route, event_record.case_index, ctx.vars, event_record)

    def _context(
        self,
        event: Scope,
        vars_: Scope,
        contact: Scope,
        config: Scope,
        agent: Scope,
        callee: Scope,
        org_id: str | None,
    ) -> RunContext:
        loop = asyncio.get_running_loop()
        # Only vars is written by nodes: it is copied; the other scopes are read as given.
        return RunContext(
            self.services,
            dict(vars_) if vars_ else {},
            event or _EMPTY,
            contact or _EMPTY,
            config or _EMPTY,
            agent or _EMPTY,
            callee or _EMPTY,
            loop.time() + self._deadline_s,
            org_id,
            loop,
        )

    async def aclose(self) -> None:
        """Close the pooled HTTP client."""
        await self._transport.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _single_node(raw: Mapping[str, Any]) -> NodeSpec:
    """Parse one node given alone, as the Test button sends it."""
    node = dict(raw)
    node.setdefault("id", "node")
    return parse_node(node)
