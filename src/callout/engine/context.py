"""What a node sees while it runs (``RunContext``) and hands back (``Step``, ``NodeEvent``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callout.spec.flow import NEXT

if TYPE_CHECKING:
    from callout.engine.services import Services

__all__ = ["SCOPE_NAMES", "NodeEvent", "RunContext", "Step"]

#: The scopes a flow's templates and cases read (SPEC §1).
SCOPE_NAMES = ("vars", "event", "contact", "config", "agent", "callee")


@dataclass(slots=True)
class RunContext:
    """The state of one run: its scopes, its deadline and the engine's services.

    ``vars`` is the only scope nodes write, through ``set_var`` so that each node's changes are
    recorded for run history.
    """

    services: Services
    vars: dict[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] = field(default_factory=dict)
    contact: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    agent: Mapping[str, Any] = field(default_factory=dict)
    callee: Mapping[str, Any] = field(default_factory=dict)
    #: Loop time (``asyncio.get_running_loop().time()``) at which the run must end.
    deadline: float = float("inf")
    #: The org the run belongs to (integration mode resolves connections inside it).
    org_id: str | None = None
    changed: dict[str, Any] = field(default_factory=dict)

    def scope(self) -> dict[str, Any]:
        """The template scope: ``{"vars": ..., "event": ..., ...}`` (live, not copied)."""
        return {
            "vars": self.vars,
            "event": self.event,
            "contact": self.contact,
            "config": self.config,
            "agent": self.agent,
            "callee": self.callee,
        }

    def set_var(self, name: str, value: Any) -> None:
        """Set ``vars[name]`` and note the change for this node's history event."""
        self.vars[name] = value
        self.changed[name] = value

    def take_changes(self) -> dict[str, Any]:
        """The vars changed since the last call (one node's changes)."""
        changes, self.changed = self.changed, {}
        return changes

    def remaining_ms(self) -> float:
        """Milliseconds left before the run deadline (may be negative)."""
        return (self.deadline - asyncio.get_running_loop().time()) * 1000.0


@dataclass(frozen=True, slots=True)
class Step:
    """Where a node sends the run: a case's target, or an edge of ``on`` by event name."""

    event: str = NEXT
    #: A node id chosen by a case; wins over ``event``.
    target: str | None = None
    #: Index of the case that matched, if any (for history).
    case_index: int | None = None
    #: What the node wants history to know (request, response, outcome...), already scrubbed.
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One node's entry in a run's history (SPEC §7); every value is already scrubbed."""

    node_id: str
    node_type: str
    started_at: float
    duration_ms: float
    route: str | None
    case_index: int | None
    vars_changed: Mapping[str, Any]
    detail: Mapping[str, Any]
    error: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "nodeType": self.node_type,
            "startedAt": self.started_at,
            "durationMs": round(self.duration_ms, 3),
            "route": self.route,
            "caseIndex": self.case_index,
            "varsChanged": dict(self.vars_changed),
            **dict(self.detail),
            "error": dict(self.error) if self.error is not None else None,
        }
