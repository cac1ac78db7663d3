"""What a node sees while it runs (``RunContext``) and hands back (``Step``, ``NodeEvent``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from callout._jsontext import dumps, scalar
from callout.engine.services import Services  # a runtime import: mypyc resolves field types
from callout.scrub import NULL_SCRUBBER, Scrubber
from callout.spec.flow import NEXT

__all__ = ["SCOPE_NAMES", "BoundedNode", "Detail", "NodeEvent", "RunContext", "Step", "Trace"]

_NO_DETAIL: Mapping[str, Any] = MappingProxyType({})
_NO_SCOPE: Mapping[str, Any] = MappingProxyType({})
#: The keys ``NodeEvent.as_dict()`` sets itself; a detail holding one of them changes the event.
_EVENT_KEYS = frozenset(
    ("nodeId", "nodeType", "startedAt", "durationMs", "route", "caseIndex", "varsChanged", "error")
)

#: The scopes a flow's templates and cases read (SPEC §1).
SCOPE_NAMES = ("vars", "event", "contact", "config", "agent", "callee")


@dataclass(slots=True, init=False)
class RunContext:
    """The state of one run: its scopes, its deadline and the engine's services.

    ``vars`` is the only scope nodes write, through ``set_var`` so that each node's changes are
    recorded for run history.
    """

    services: Services
    vars: dict[str, Any]
    event: Mapping[str, Any]
    contact: Mapping[str, Any]
    config: Mapping[str, Any]
    agent: Mapping[str, Any]
    callee: Mapping[str, Any]
    #: Loop time (``loop.time()``) at which the run must end.
    deadline: float
    #: The org the run belongs to (integration mode resolves connections inside it).
    org_id: str | None
    changed: dict[str, Any]
    #: The scrubbers of the calls made so far, so a run's output can hide every secret used.
    scrubbers: list[Scrubber]
    #: The event loop the run is on (its clock measures the deadline); None for a context made
    #: outside one (a host's unit test of its own node type): then the running loop's, when read.
    loop: asyncio.AbstractEventLoop | None = field(repr=False, compare=False)

    # Written out rather than generated: a dataclass __init__ with default factories costs a
    # microsecond more, on every run.
    def __init__(
        self,
        services: Services,
        vars: dict[str, Any] | None = None,
        event: Mapping[str, Any] = _NO_SCOPE,
        contact: Mapping[str, Any] = _NO_SCOPE,
        config: Mapping[str, Any] = _NO_SCOPE,
        agent: Mapping[str, Any] = _NO_SCOPE,
        callee: Mapping[str, Any] = _NO_SCOPE,
        deadline: float = float("inf"),
        org_id: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.services = services
        self.vars = {} if vars is None else vars
        self.event = event
        self.contact = contact
        self.config = config
        self.agent = agent
        self.callee = callee
        self.deadline = deadline
        self.org_id = org_id
        self.changed = {}
        self.scrubbers = []
        self.loop = _running_loop() if loop is None else loop

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

    def set_vars(self, values: Mapping[str, Any]) -> None:
        """``set_var`` for each item, in order (one call for the several vars a call sets)."""
        self.vars.update(values)
        self.changed.update(values)

    def note_secrets(self, scrubber: Scrubber) -> None:
        """Remember a call's secrets, so the run's printed vars and errors never show them."""
        # Scrubbers compare by identity (no __eq__): ``in`` is the identity test, in C.
        if scrubber not in self.scrubbers and scrubber.secrets:
            self.scrubbers.append(scrubber)

    def run_scrubber(self) -> Scrubber:
        """One scrubber for every secret used in this run (a call's own when it was the only
        one: building a scrubber costs more than the rest of a run)."""
        if not self.scrubbers:
            return NULL_SCRUBBER
        if len(self.scrubbers) == 1:
            return self.scrubbers[0]
        secrets = [s for scrubber in self.scrubbers for s in scrubber.secrets]
        return Scrubber(dict.fromkeys(secrets))

    def take_changes(self) -> dict[str, Any]:
        """The vars changed since the last call (one node's changes)."""
        changes, self.changed = self.changed, {}
        return changes

    def remaining_ms(self) -> float:
        """Milliseconds left before the run deadline (may be negative)."""
        loop = self.loop or asyncio.get_running_loop()
        return (self.deadline - loop.time()) * 1000.0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Trace(Protocol):
    """A node's history detail that is built (and scrubbed) only when it is read; ``scrubber``
    replaces the trace's own (with the run's, which holds every secret the run used).

    ``scrub(value, scrubber)`` is ``(scrubber or the trace's own).data(value)``. A trace that
    also exposes its own ``scrubber`` (``CallTrace`` does) lets run history skip the deep copies
    when nothing in the event can hold a secret.
    """

    def as_dict(self, scrubber: Scrubber | None = None) -> dict[str, Any]: ...

    def scrub(self, value: Any, scrubber: Scrubber | None = None) -> Any: ...


Detail = Mapping[str, Any] | Trace


class BoundedNode:
    """A built-in node that keeps the run's deadline itself (it returns at once, or bounds its
    call by the time the run has left), so the runner arms no timer around it."""

    __slots__ = ()

    @property
    def bounded(self) -> bool:
        return True


class Step(NamedTuple):
    """Where a node sends the run: a case's target, or an edge of ``on`` by event name.

    A named tuple (immutable, and cheaper to build on every node than a frozen dataclass).
    """

    event: str = NEXT
    #: A node id chosen by a case; wins over ``event``.
    target: str | None = None
    #: Index of the case that matched, if any (for history).
    case_index: int | None = None
    #: What the node wants history to know (request, response, outcome...): scrubbed data, or a
    #: ``Trace`` that scrubs when read.
    detail: Detail = _NO_DETAIL


@dataclass(slots=True, init=False)
class NodeEvent:
    """One node's entry in a run's history (SPEC §7); ``details()`` is scrubbed."""

    node_id: str
    node_type: str
    started_at: float
    duration_ms: float
    route: str | None
    case_index: int | None
    vars_changed: Mapping[str, Any]
    detail: Detail
    error: Mapping[str, Any] | None
    #: Every secret the whole run used (set when the run ends): a later node may copy a secret
    #: out of a response (a setVariable), so each event is scrubbed of all of them.
    run_scrubber: Scrubber
    _scrubbed: bool

    # Written out rather than generated: the generated one is interpreted Python even in the
    # compiled build, ~1.3 us of every node's run (bench/RESULTS.md, fifteenth pass).
    def __init__(
        self,
        node_id: str,
        node_type: str,
        started_at: float,
        duration_ms: float,
        route: str | None,
        case_index: int | None,
        vars_changed: Mapping[str, Any],
        detail: Detail,
        error: Mapping[str, Any] | None = None,
        run_scrubber: Scrubber = NULL_SCRUBBER,
        _scrubbed: bool = False,
    ) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.started_at = started_at
        self.duration_ms = duration_ms
        self.route = route
        self.case_index = case_index
        self.vars_changed = vars_changed
        self.detail = detail
        self.error = error
        self.run_scrubber = run_scrubber
        self._scrubbed = _scrubbed

    def details(self) -> Mapping[str, Any]:
        """The node's history detail (request, response, outcome...), scrubbed."""
        detail = self.detail
        if self._scrubbed and isinstance(detail, Mapping):
            return detail
        run = self.run_scrubber if self.run_scrubber.secrets else None
        if not isinstance(detail, Mapping):  # one pass, with the run's secrets when it has any
            trace, detail = detail, detail.as_dict(run)
            self.vars_changed = trace.scrub(self.vars_changed, run)
        elif run is not None:
            detail = run.data(detail)
            self.vars_changed = run.data(self.vars_changed)
        if run is not None:
            self.error = run.data(self.error)
        self._scrubbed = run is not None
        self.detail = detail
        return detail

    def as_dict(self) -> dict[str, Any]:
        detail = self.details()  # first: it also scrubs vars_changed
        return {
            "nodeId": self.node_id,
            "nodeType": self.node_type,
            "startedAt": self.started_at,
            "durationMs": round(self.duration_ms, 3),
            "route": self.route,
            "caseIndex": self.case_index,
            "varsChanged": dict(self.vars_changed),
            **detail,
            "error": dict(self.error) if self.error is not None else None,
        }

    def as_json(self) -> str | None:
        """``as_dict()`` as ``json.dumps(..., allow_nan=False)`` would write it, byte for byte,
        without ``details()``'s deep copies when there is nothing to scrub (``to_json``).

        None when it cannot be built so (a value that is not strict JSON, or a detail key that
        is also an event key): then use ``as_dict()``. Run history calls it once per event;
        it leaves the event as it was.
        """
        detail = self.detail
        run = self.run_scrubber if self.run_scrubber.secrets else None
        try:
            if isinstance(detail, Mapping):
                if not _EVENT_KEYS.isdisjoint(detail):
                    return None
                if run is None or self._scrubbed:  # as_dict() scrubs nothing (more) here
                    return dumps(self.as_dict())
                scrubber, items = run, run.to_json(detail) if detail else "{}"
            else:
                own = getattr(detail, "scrubber", None)  # a host's own Trace may not have one
                if run is not None:
                    scrubber = run
                elif isinstance(own, Scrubber):
                    scrubber = own
                else:
                    return None
                shown = detail.as_dict(run)
                if not _EVENT_KEYS.isdisjoint(shown):
                    return None
                items = dumps(shown)
            changed = scrubber.to_json(self.vars_changed) if self.vars_changed else "{}"
            error = self.error
            if error is not None:
                error_text = run.to_json(error) if run is not None else dumps(dict(error))
            else:
                error_text = "null"
            more = ", " + items[1:-1] if len(items) > 2 else ""
            return (
                f'{{"nodeId": {scalar(self.node_id)}, "nodeType": {scalar(self.node_type)}, '
                f'"startedAt": {scalar(self.started_at)}, '
                f'"durationMs": {scalar(round(self.duration_ms, 3))}, '
                f'"route": {scalar(self.route)}, "caseIndex": {scalar(self.case_index)}, '
                f'"varsChanged": {changed}{more}, "error": {error_text}}}'
            )
        except (TypeError, ValueError, RecursionError):
            return None
