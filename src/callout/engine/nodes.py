"""The small built-in node types: ``onFlowStart``, ``branch`` and ``setVariable``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callout.cases import Case, case_matches, compile_cases
from callout.engine.context import BoundedNode, RunContext, Step
from callout.engine.node_config import ConfigReader
from callout.errors import FlowValidationError
from callout.spec.flow import NodeSpec
from callout.template import JsonTemplate, compile_value

__all__ = [
    "BranchType",
    "OnFlowStartType",
    "SetVariableType",
    "first_case",
    "node_cases",
    "route_by_cases",
]


def node_cases(node: NodeSpec) -> tuple[Case, ...]:
    """Compile ``config.cases`` with errors that point into this node."""
    return compile_cases(node.config.get("cases", []), field=f"{node.where}.config.cases")


def first_case(cases: tuple[Case, ...], scope: dict[str, Any]) -> tuple[str | None, int | None]:
    """(target, index) of the first matching case, or (None, None): follow the default edge."""
    for index, case in enumerate(cases):
        if case_matches(case, scope):
            return case.node_id, index
    return None, None


def route_by_cases(cases: tuple[Case, ...], scope: dict[str, Any]) -> Step:
    """The first matching case's target, or the default edge."""
    target, index = first_case(cases, scope)
    return _NEXT if target is None else Step(target=target, case_index=index)


@dataclass(frozen=True, slots=True)
class _Start(BoundedNode):
    spec: NodeSpec

    async def run(self, ctx: RunContext) -> Step:
        return _NEXT


_NEXT = Step()


class OnFlowStartType:
    """Where a run begins; it only follows ``on.__next``."""

    name = "onFlowStart"

    def compile(self, node: NodeSpec) -> _Start:
        return _Start(node)


@dataclass(frozen=True, slots=True)
class _Branch(BoundedNode):
    spec: NodeSpec
    cases: tuple[Case, ...]

    async def run(self, ctx: RunContext) -> Step:
        return route_by_cases(self.cases, ctx.scope())


class BranchType:
    """Routes on cases alone."""

    name = "branch"

    def compile(self, node: NodeSpec) -> _Branch:
        return _Branch(node, node_cases(node))


@dataclass(frozen=True, slots=True)
class _SetVariable(BoundedNode):
    spec: NodeSpec
    var: str
    value: JsonTemplate

    async def run(self, ctx: RunContext) -> Step:
        ctx.set_var(self.var, self.value.render(ctx.scope()))
        return Step()


class SetVariableType:
    """``{name, value}``: sets ``vars[name]`` to the rendered template value (typed when the value
    is exactly one placeholder)."""

    name = "setVariable"

    def compile(self, node: NodeSpec) -> _SetVariable:
        reader = ConfigReader(node)
        reader.refuse_unknown({"name", "value"})
        var = reader.var_name("name")
        if "value" not in node.config:
            raise FlowValidationError(
                f"node '{node.id}': setVariable needs a 'value' (a literal or a template)",
                field=f"{node.where}.config.value",
                node_id=node.id,
            )
        value = compile_value(node.config["value"], field=f"{node.where}.config.value")
        return _SetVariable(node, var, value)
