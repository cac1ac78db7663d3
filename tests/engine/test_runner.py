"""The flow runner: validation when loading, routing, limits, and host node types."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import pytest

from callout.engine.context import RunContext, Step
from callout.engine.engine import Engine
from callout.engine.registry import SimpleNodeType
from callout.engine.runner import new_run_id
from callout.engine.services import EngineConfig, RunLimits
from callout.errors import FlowValidationError
from callout.spec.flow import NodeSpec


def flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    start = {"id": "start", "type": "onFlowStart", "on": {"__next": nodes[0]["id"]}}
    return {"id": "f", "name": "test flow", "nodes": [start, *nodes]}


def setvar(node_id: str, name: str, value: Any, to: str | None = None) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "setVariable",
        "config": {"name": name, "value": value},
        "on": {"__next": to} if to else {},
    }


@pytest.mark.parametrize(
    ("doc", "field", "node_id", "words"),
    [
        (flow({"id": "a", "type": "screenPop"}), "nodes[1].type", "a", "screenPop"),
        (flow(setvar("a", "x", 1, to="ghost")), "nodes[1].on.__next", "a", "ghost"),
        (
            {"id": "f", "nodes": [setvar("a", "x", 1)]},
            "nodes",
            None,
            "onFlowStart",
        ),
        (flow(setvar("a", "x", 1), setvar("a", "y", 2)), "nodes[2].id", "a", "twice"),
        (
            flow(
                {
                    "id": "b",
                    "type": "branch",
                    "config": {
                        "cases": [{"path": "x", "op": "eq", "value": 1, "nodeId": "nowhere"}]
                    },
                }
            ),
            "nodes[1].config.cases[0].nodeId",
            "b",
            "nowhere",
        ),
        (
            flow(
                {
                    "id": "b",
                    "type": "branch",
                    "config": {"cases": [{"path": "x", "op": "like", "value": 1, "nodeId": "end"}]},
                }
            ),
            "cases[0].op",
            None,
            "like",
        ),
        (
            flow({"id": "s", "type": "setVariable", "config": {"value": 1}}),
            "config.name",
            "s",
            "name",
        ),
    ],
)
def test_invalid_flows_are_rejected_naming_the_node(
    doc: dict[str, Any], field: str, node_id: str | None, words: str
) -> None:
    """Unknown types, dangling edges, no start, duplicate ids and bad cases are each named."""
    with pytest.raises(FlowValidationError) as info:
        Engine().load_flow(doc)
    assert info.value.field is not None
    assert info.value.field.endswith(field)
    assert words in info.value.message
    if node_id is not None:
        assert info.value.node_id == node_id


async def test_set_variable_keeps_types_and_interpolates() -> None:
    """setVariable takes a typed value from a lone placeholder and text from a longer one."""
    async with Engine() as engine:
        result = await engine.run_flow(
            flow(
                setvar("a", "n", "{{vars.count}}", to="b"),
                setvar("b", "greeting", "Hi {{contact.name}} ({{vars.count}})", to="end"),
            ),
            vars={"count": 3},
            contact={"name": "Ada"},
        )
    assert result.status == "completed"
    assert result.vars["n"] == 3
    assert result.vars["greeting"] == "Hi Ada (3)"
    assert result.path == ["start", "a", "b"]
    assert result.ended_by == "end"


async def test_branch_routes_by_first_matching_case_then_next() -> None:
    """Cases are evaluated in order; with no match the run follows on.__next."""
    branch = {
        "id": "b",
        "type": "branch",
        "config": {
            "cases": [
                {"path": "event.from", "op": "startsWith", "value": "+44", "nodeId": "uk"},
                {"path": "tier", "op": "in", "value": ["gold", "platinum"], "nodeId": "vip"},
                {"path": "tier", "op": "exists", "value": None, "nodeId": "other"},
            ]
        },
        "on": {"__next": "anon"},
    }
    doc = flow(
        branch,
        setvar("uk", "q", "uk"),
        setvar("vip", "q", "vip"),
        setvar("other", "q", "other"),
        setvar("anon", "q", "anon"),
    )
    async with Engine() as engine:
        compiled = engine.load_flow(doc)
        runs = {
            name: await engine.run_flow(compiled, event={"from": frm}, vars=v)
            for name, frm, v in [
                ("uk", "+447700900000", {"tier": "gold"}),
                ("vip", "+15551234", {"tier": "gold"}),
                ("other", "+15551234", {"tier": "tin"}),
                ("anon", "+15551234", {}),
            ]
        }
    for name, result in runs.items():
        assert result.vars["q"] == name
        assert result.path == ["start", "b", name]


async def test_no_route_matched_is_recorded_when_there_is_no_next() -> None:
    """With no matching case and no __next, the run ends and says no route matched."""
    branch = {
        "id": "b",
        "type": "branch",
        "config": {"cases": [{"path": "x", "op": "eq", "value": 1, "nodeId": "end"}]},
    }
    async with Engine() as engine:
        result = await engine.run_flow(flow(branch), vars={"x": 2})
    assert result.status == "completed"
    assert result.ended_by == "no_route_matched"
    assert result.events[-1].route is None


async def test_a_node_without_edges_ends_the_run() -> None:
    """A node with no edge to take ends the run normally."""
    async with Engine() as engine:
        result = await engine.run_flow(flow(setvar("a", "x", 1)))
    assert (result.status, result.ended_by, result.path) == ("completed", "no_edge", ["start", "a"])


async def test_a_loop_stops_at_the_step_limit() -> None:
    """A flow that loops forever fails with step_limit, naming the node."""
    doc = flow(setvar("a", "x", 1, to="b"), setvar("b", "y", 2, to="a"))
    async with Engine(EngineConfig(run=RunLimits(max_steps=25))) as engine:
        result = await engine.run_flow(doc)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["code"] == "step_limit"
    assert len(result.path) == 25


async def test_the_run_deadline_ends_a_stuck_node() -> None:
    """A node that never returns is cut off by the run's wall-clock deadline."""
    never = asyncio.Event()

    async def stuck(node: NodeSpec, ctx: RunContext) -> Step | None:
        await never.wait()
        return None

    config = EngineConfig(run=RunLimits(deadline_ms=200))
    async with Engine(config, node_types=(SimpleNodeType("hold", stuck),)) as engine:
        result = await engine.run_flow(flow({"id": "h", "type": "hold"}))
    assert result.status == "failed"
    assert result.error == {
        "code": "run_deadline",
        "message": result.error["message"],
        "nodeId": "h",
    }


async def test_host_node_types_run_and_route_by_event() -> None:
    """A host platform's registered type runs and can pick an edge by event name."""
    said: list[str] = []

    async def say(node: NodeSpec, ctx: RunContext) -> Step | None:
        said.append(str(ctx.vars.get("greeting")))
        return Step(event="done")

    engine = Engine()
    engine.registry.simple("say")(say)
    doc = flow(
        setvar("g", "greeting", "hello", to="s"),
        {"id": "s", "type": "say", "on": {"done": "after", "__next": "wrong"}},
        setvar("after", "ok", True),
        setvar("wrong", "ok", False),
    )
    result = await engine.run_flow(doc)
    await engine.aclose()
    assert said == ["hello"]
    assert result.vars["ok"] is True


async def test_a_failing_host_node_fails_the_run_not_the_engine() -> None:
    """An exception inside a host node fails that run with node_error and the node's id."""

    async def boom(node: NodeSpec, ctx: RunContext) -> Step | None:
        raise RuntimeError("device unplugged")

    async with Engine(node_types=(SimpleNodeType("boom", boom),)) as engine:
        result = await engine.run_flow(flow({"id": "x", "type": "boom"}))
        again = await engine.run_flow(flow(setvar("a", "x", 1)))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error["code"], result.error["nodeId"]) == ("node_error", "x")
    assert again.status == "completed"


async def test_missing_template_path_in_set_variable_fails_the_run_clearly() -> None:
    """A setVariable template naming a missing path fails the run, naming the path."""
    async with Engine() as engine:
        result = await engine.run_flow(flow(setvar("a", "x", "{{vars.nope.deeper}}")))
    assert result.status == "failed"
    assert result.error is not None
    assert "vars.nope" in result.error["message"]
    assert result.error["nodeId"] == "a"


def test_registering_a_type_twice_is_refused() -> None:
    """Two node types cannot silently share a name."""

    async def noop(node: NodeSpec, ctx: RunContext) -> Step | None:
        return None

    engine = Engine()
    with pytest.raises(ValueError, match="already registered"):
        engine.registry.register(SimpleNodeType("branch", noop))


def test_a_run_context_made_outside_a_loop_reads_the_deadline_inside_one() -> None:
    """A host may build a RunContext for its own node type's unit test before any event loop
    runs; its deadline is then measured on the loop that runs the node."""
    engine = Engine()
    ctx = RunContext(engine.services, {"x": 1})
    assert ctx.loop is None

    async def remaining() -> float:
        loop = asyncio.get_running_loop()
        ctx.deadline = loop.time() + 2.0
        return ctx.remaining_ms()

    left = asyncio.run(remaining())
    assert 0 < left <= 2000.0
    assert ctx.event == {}
    assert ctx.vars == {"x": 1}


async def test_run_ids_carry_the_millisecond_the_run_started() -> None:
    """A run's id is run_, its start in milliseconds since the epoch (12 hex digits), then 20
    random hex digits: ids sort by when runs started, which keeps history's indexes growing at
    one end."""
    async with Engine(EngineConfig()) as engine:
        compiled = engine.load_flow(flow(setvar("a", "x", 1)))
        before = time.time_ns() // 1_000_000
        result = await engine.run_flow(compiled)
        after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"run_[0-9a-f]{32}", result.run_id)
    assert before <= int(result.run_id[4:16], 16) <= after


def test_run_ids_sort_by_their_millisecond_and_never_repeat() -> None:
    """Any id of a later millisecond sorts after any id of an earlier one (the random part
    never decides between two milliseconds), and 100,000 ids made in one millisecond are all
    different."""
    for ms in (0, 1_700_000_000_000, 1_700_000_000_999, 0xFFFF_FFFF_FFFE):
        earlier = [new_run_id(ms) for _ in range(200)]
        later = [new_run_id(ms + 1) for _ in range(200)]
        assert max(earlier) < min(later)
    same = {new_run_id(1_800_000_000_000) for _ in range(100_000)}
    assert len(same) == 100_000


def test_a_forked_process_never_makes_its_parents_next_run_id() -> None:
    """Ids draw their random part from a pool filled from the OS's CSPRNG; a child made by
    fork() (a pre-forking server's workers) must not hand out the parts its parent will."""
    new_run_id(1_800_000_000_000)  # the pool is filled
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent, then out without pytest's teardown
        os.close(read_end)
        os.write(write_end, new_run_id(1_800_000_000_000).encode())
        os._exit(0)
    os.close(write_end)
    try:
        childs = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    parents = new_run_id(1_800_000_000_000)
    assert re.fullmatch(r"run_[0-9a-f]{32}", childs)
    assert childs != parents


class _Sink:
    """A history sink with room for ``room`` runs; the rest go through ``record``."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken: list[tuple[str, str | None]] = []
        self.waited: list[tuple[str, str | None]] = []

    def record_nowait(self, result: Any, org_id: str | None) -> bool:
        if self.room == 0:
            return False
        self.room -= 1
        self.taken.append((result.run_id, org_id))
        return True

    async def record(self, result: Any, org_id: str | None) -> None:
        self.waited.append((result.run_id, org_id))


async def test_run_flow_hands_the_finished_run_to_its_history_sink() -> None:
    """With history=, each finished run goes to the sink before run_flow
    returns: at once while it has room, else through record(), which may wait."""
    sink = _Sink(room=1)
    async with Engine(EngineConfig()) as engine:
        compiled = engine.load_flow(flow(setvar("a", "x", 1)))
        first = await engine.run_flow(compiled, org_id="org-a", history=sink)
        second = await engine.run_flow(compiled, history=sink)
        plain = await engine.run_flow(compiled)
    assert sink.taken == [(first.run_id, "org-a")]
    assert sink.waited == [(second.run_id, None)]
    assert plain.run_id not in {run_id for run_id, _ in sink.taken + sink.waited}
