"""The flow runner: walk a compiled flow from ``onFlowStart``, node by node, within its limits."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from callout.engine.context import NodeEvent, RunContext, Step
from callout.engine.registry import CompiledNode, NodeRegistry
from callout.errors import CalloutError, FlowError
from callout.scrub import NULL_SCRUBBER, Scrubber
from callout.spec.flow import END, NEXT, FlowSpec, parse_flow

__all__ = ["CompiledFlow", "RunResult", "compile_flow", "new_run_id", "run_compiled", "step_node"]

RunStatus = Literal["completed", "failed"]


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    """A flow whose every node is compiled: ready to run any number of times."""

    spec: FlowSpec
    nodes: Mapping[str, CompiledNode]

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(slots=True, init=False)
class RunResult:
    """How a run went: its status, the path it took, the vars it ended with, and its events."""

    run_id: str
    flow_id: str
    status: RunStatus
    path: list[str]
    vars: dict[str, Any]
    error: dict[str, Any] | None
    events: list[NodeEvent]
    #: Why the run stopped: "end", "no_edge", "no_route_matched", or an error code.
    ended_by: str
    duration_ms: float
    #: Removes every secret the run's calls used (for anything shown outside the process).
    scrubber: Scrubber
    #: Wall-clock start (epoch seconds) and its perf_counter twin, to date events cheaply.
    started_at: float
    started_perf: float

    # Written out rather than generated: the generated one with default factories costs about
    # half a microsecond more on every run.
    def __init__(
        self,
        run_id: str,
        flow_id: str,
        status: RunStatus,
        path: list[str],
        vars: dict[str, Any],
        error: dict[str, Any] | None,
        events: list[NodeEvent] | None = None,
        ended_by: str = "end",
        duration_ms: float = 0.0,
        scrubber: Scrubber = NULL_SCRUBBER,
        started_at: float | None = None,
        started_perf: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.flow_id = flow_id
        self.status = status
        self.path = path
        self.vars = vars
        self.error = error
        self.events = [] if events is None else events
        self.ended_by = ended_by
        self.duration_ms = duration_ms
        self.scrubber = scrubber
        self.started_at = time.time() if started_at is None else started_at
        self.started_perf = time.perf_counter() if started_perf is None else started_perf

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape ``callout run --json`` prints; vars and error are scrubbed."""
        return {
            "runId": self.run_id,
            "flowId": self.flow_id,
            "status": self.status,
            "path": list(self.path),
            "vars": self.scrubber.data(self.vars),
            "error": self.scrubber.data(self.error),
            "endedBy": self.ended_by,
            "durationMs": round(self.duration_ms, 3),
        }


def compile_flow(
    data: Mapping[str, Any] | str | bytes | FlowSpec, registry: NodeRegistry
) -> CompiledFlow:
    """Parse (if needed), validate and compile every node of a flow."""
    spec = data if isinstance(data, FlowSpec) else parse_flow(data)
    nodes = {node.id: registry.compile(node) for node in spec.nodes}
    return CompiledFlow(spec, MappingProxyType(nodes))


def new_run_id(now_ms: int | None = None) -> str:
    """``run_`` + the time in milliseconds since the epoch (12 hex digits) + 80 random bits (20).

    Time first, so ids sort by when the run started (to the millisecond) and run history's
    indexes on them grow at one end: with random ids, each write lands on a random page of
    indexes that grow with history, and with 300,000 runs stored a write took three times as
    long (bench/history_scale.py). The random part keeps ids unguessable and, at 80 bits,
    unique (two runs with one id would keep only the first's history).
    """
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    stamp = _stamp[0]
    if stamp[0] != ms:
        stamp = _stamp[0] = (ms, f"run_{ms:012x}")
    try:
        return stamp[1] + _random_parts.pop()
    except IndexError:
        return stamp[1] + _refill_random_parts()


#: The last millisecond an id was made in, and its ``run_`` + 12 hex digits (several runs
#: start in one millisecond under load: formatting it once saves ~0.4 us a run).
_stamp: list[tuple[int, str]] = [(-1, "")]
#: 80-bit random parts (20 hex digits), drawn from the OS's CSPRNG 256 at a time: one
#: ``os.urandom`` call a run was ~0.7 us of its ~2 us id. Each is popped once (``list.pop`` is
#: atomic, so threads never share one); a forked child drops its parent's (they would repeat).
_random_parts: list[str] = []
_PARTS_A_DRAW = 256


def _refill_random_parts() -> str:
    drawn = os.urandom(10 * _PARTS_A_DRAW).hex()
    parts = [drawn[i : i + 20] for i in range(0, len(drawn), 20)]
    mine = parts.pop()
    _random_parts.extend(parts)
    return mine


os.register_at_fork(after_in_child=_random_parts.clear)


async def run_compiled(flow: CompiledFlow, ctx: RunContext, *, max_steps: int) -> RunResult:
    """Run ``flow`` in ``ctx`` until it ends, fails, or passes its step limit or deadline."""
    result = RunResult(
        run_id=new_run_id(),
        flow_id=flow.id,
        status="completed",
        path=[],
        vars=ctx.vars,
        error=None,
    )
    started = time.perf_counter()
    try:
        await _walk(flow, ctx, result, max_steps)
    except FlowError as exc:
        _fail(result, exc)
    result.duration_ms = (time.perf_counter() - started) * 1000.0
    result.scrubber = ctx.run_scrubber()
    for event in result.events:
        event.run_scrubber = result.scrubber
    return result


async def _walk(flow: CompiledFlow, ctx: RunContext, result: RunResult, max_steps: int) -> None:
    node_id: str | None = flow.spec.start.id
    loop = asyncio.get_running_loop()
    while node_id is not None:
        if loop.time() >= ctx.deadline:
            raise _deadline_error(result.path[-1] if result.path else node_id)
        if len(result.path) >= max_steps:
            raise FlowError(
                f"the run passed its limit of {max_steps} steps at node '{node_id}'; "
                "a flow loop needs an exit (a case or an edge to 'end')",
                code="step_limit",
                node_id=node_id,
            )
        node_id = await step_node(flow, node_id, ctx, result)


async def step_node(
    flow: CompiledFlow, node_id: str, ctx: RunContext, result: RunResult
) -> str | None:
    """Run one node, record its event, and return the next node id (None ends the run)."""
    node = flow.nodes[node_id]
    result.path.append(node_id)
    started = time.perf_counter()
    error: CalloutError | None = None
    try:
        if getattr(node, "bounded", False):
            step = await node.run(ctx)
        else:  # a host node could hang: the run's deadline cuts it off
            async with asyncio.timeout_at(ctx.deadline):
                step = await node.run(ctx)
    except TimeoutError:
        error, step = _deadline_error(node_id), Step()
    except CalloutError as exc:
        error, step = exc, Step()
    except Exception as exc:  # noqa: BLE001  a host platform's node failed: the run fails, the engine lives
        error, step = (
            FlowError(
                f"node '{node_id}' failed: {type(exc).__name__}: {NULL_SCRUBBER.text(str(exc))}",
                code="node_error",
                node_id=node_id,
            ),
            Step(),
        )
    duration = (time.perf_counter() - started) * 1000.0
    if error is not None:
        target = None
    elif step.target is not None:  # _route(), inlined for the usual case: a case's target
        target = step.target
    else:
        target = _route(node.spec.on, step)
    result.events.append(
        NodeEvent(
            node_id=node_id,
            node_type=node.spec.type,
            started_at=result.started_at + (started - result.started_perf),
            duration_ms=duration,
            route=target,
            case_index=step.case_index,
            vars_changed=ctx.take_changes(),
            detail=step.detail,
            error=_error_dict(error, node_id) if error is not None else None,
        )
    )
    if error is not None:
        raise (
            error
            if isinstance(error, FlowError)
            else FlowError(error.message, code=error.code, node_id=node_id)
        )
    if target is None or target == END:
        result.ended_by = (
            "end"
            if target == END
            else ("no_route_matched" if "cases" in node.spec.config else "no_edge")
        )
        return None
    return target


def _deadline_error(node_id: str | None) -> FlowError:
    return FlowError(
        "the run passed its deadline; shorten the flow or the nodes' timeouts",
        code="run_deadline",
        node_id=node_id,
    )


def _route(on: Mapping[str, str], step: Step) -> str | None:
    if step.target is not None:
        return step.target
    target = on.get(step.event)
    if target is None and step.event != NEXT:
        target = on.get(NEXT)
    return target


def _error_dict(error: CalloutError, node_id: str | None) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "nodeId": node_id}


def _fail(result: RunResult, error: FlowError) -> None:
    result.status = "failed"
    result.error = _error_dict(error, error.node_id)
    result.ended_by = error.code
