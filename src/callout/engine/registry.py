"""The node registry: which node types exist, and how each one is compiled and run.

A host platform adds its own types (``screenPop``, ``say``, ...) here. A node type compiles a
node's config once, when a flow is loaded, so a flow that names an unregistered type, or a node
whose config is wrong, is rejected before it ever runs::

    registry = default_registry()

    @registry.simple("say")
    async def say(node: NodeSpec, ctx: RunContext) -> Step | None:
        await my_tts.say(ctx.vars.get("greeting", ""))
        return None          # None: follow on.__next
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from callout.engine.context import RunContext, Step
from callout.errors import CalloutError, FlowValidationError
from callout.spec.flow import NodeSpec

__all__ = ["CompiledNode", "NodeRegistry", "NodeType", "SimpleNodeType"]


class CompiledNode(Protocol):
    """A node ready to run: its config parsed and its templates compiled."""

    @property
    def spec(self) -> NodeSpec: ...

    async def run(self, ctx: RunContext) -> Step: ...


class NodeType(Protocol):
    """A kind of node: ``compile`` validates a node's config (raising ``FlowValidationError``
    that names the node and the field) and returns something that can run it."""

    @property
    def name(self) -> str: ...

    def compile(self, node: NodeSpec) -> CompiledNode: ...


SimpleRun = Callable[[NodeSpec, RunContext], Awaitable[Step | None]]


@dataclass(frozen=True, slots=True)
class _SimpleCompiled:
    spec: NodeSpec
    fn: SimpleRun

    async def run(self, ctx: RunContext) -> Step:
        step = await self.fn(self.spec, ctx)
        return step if step is not None else Step()


@dataclass(frozen=True, slots=True)
class SimpleNodeType:
    """A node type made from one async function; an optional ``validate`` checks the config."""

    name: str
    fn: SimpleRun
    validate: Callable[[NodeSpec], None] | None = None

    def compile(self, node: NodeSpec) -> CompiledNode:
        if self.validate is not None:
            self.validate(node)
        return _SimpleCompiled(node, self.fn)


class NodeRegistry:
    """Node types by name. ``copy()`` it to extend the defaults without touching them."""

    def __init__(self, types: dict[str, NodeType] | None = None) -> None:
        self._types: dict[str, NodeType] = dict(types or {})

    def register(self, node_type: NodeType, *, replace: bool = False) -> None:
        """Add a node type; registering a name twice is an error unless ``replace``."""
        if node_type.name in self._types and not replace:
            raise ValueError(
                f"node type '{node_type.name}' is already registered; pass replace=True to "
                "override it"
            )
        self._types[node_type.name] = node_type

    def simple(self, name: str) -> Callable[[SimpleRun], SimpleRun]:
        """Decorator: register an async ``fn(node, ctx) -> Step | None`` as type ``name``."""

        def decorate(fn: SimpleRun) -> SimpleRun:
            self.register(SimpleNodeType(name, fn))
            return fn

        return decorate

    def compile(self, node: NodeSpec) -> CompiledNode:
        """Compile one node, refusing a type nobody registered."""
        node_type = self._types.get(node.type)
        if node_type is None:
            known = ", ".join(sorted(self._types))
            raise FlowValidationError(
                f"node '{node.id}' has type '{node.type}', which is not registered "
                f"(known types: {known})",
                field=f"{node.where}.type",
                node_id=node.id,
            )
        try:
            return node_type.compile(node)
        except FlowValidationError as exc:
            if exc.node_id is None:
                exc.node_id = node.id
            raise
        except CalloutError as exc:  # e.g. a template that does not parse: a flow error here
            raise FlowValidationError(
                f"node '{node.id}': {exc.message}", code=exc.code, field=exc.field, node_id=node.id
            ) from None

    def copy(self) -> NodeRegistry:
        return NodeRegistry(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._types))
