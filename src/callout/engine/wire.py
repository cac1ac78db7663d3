"""A finished run as plain data, for the history writer process (``service/history_process``).

Scrubbing and encoding a run for history costs about as much as the call itself, so the serving
process hands each finished run to a separate writer process and goes on. What it hands over is
the run *before* scrubbing: a tuple of str, numbers, None, lists and dicts (what ``marshal``
writes, in C), built from the run's fields without walking its values. The writer makes the
run back (``run_from_wire``) and scrubs and encodes it exactly as the serving process would have
(``HistoryStore.encode``). A wire holds secrets: it goes only to that writer, over a pipe.

A value ``marshal`` cannot write (a host's own object in vars) is replaced by what history would
have stored for it anyway (``plain``): a run's JSON never holds more than its type's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from callout.engine.call import CallTrace, plain_dict
from callout.engine.context import NodeEvent
from callout.engine.runner import RunResult, RunStatus
from callout.scrub import NULL_SCRUBBER, scrubber_for

__all__ = [
    "RunWire",
    "plain",
    "run_from_wire",
    "run_wire",
    "unavailable_wire",
    "without_values",
]

#: A run as ``run_wire`` gives it (a tuple, so ``marshal`` writes it in C).
RunWire = tuple[Any, ...]

_FULL, _UNAVAILABLE = "run", "unavailable"
_MAPPING, _CALL = 0, 1


def run_wire(result: RunResult, org_id: str | None) -> RunWire:
    """``result`` (and the org it ran for) as plain data; its values are not copied."""
    return (
        _FULL,
        result.run_id,
        org_id,
        result.flow_id,
        result.status,
        result.path,
        result.vars,
        result.error,
        [_event_wire(event) for event in result.events],
        result.ended_by,
        result.duration_ms,
        result.scrubber.secrets,
        result.started_at,
        result.started_perf,
    )


def unavailable_wire(result: RunResult, org_id: str | None) -> RunWire:
    """The run without its vars and events: for a run whose values cannot be sent at all."""
    return (
        _UNAVAILABLE,
        result.run_id,
        org_id,
        result.flow_id,
        result.status,
        list(result.path),
        result.ended_by,
        result.duration_ms,
        result.started_at,
    )


def without_values(wire: RunWire) -> RunWire:
    """A full ``wire`` cut down to ``unavailable_wire``'s: for values that cannot be sent."""
    return (_UNAVAILABLE, *wire[1:5], list(wire[5]), wire[9], wire[10], wire[12])


def _event_wire(event: NodeEvent) -> tuple[Any, ...]:
    detail = event.detail
    if isinstance(detail, CallTrace):
        shipped: tuple[int, Any] = (_CALL, detail.wire())
    elif isinstance(detail, (dict, MappingProxyType, Mapping)):  # in order: the ABC last
        shipped = (_MAPPING, plain_dict(detail))
    else:  # a host's own Trace: made into its (scrubbed) mapping here
        shipped = (_MAPPING, plain_dict(event.details()))
    error = event.error
    return (
        event.node_id,
        event.node_type,
        event.started_at,
        event.duration_ms,
        event.route,
        event.case_index,
        plain_dict(event.vars_changed),
        shipped,
        None if error is None else plain_dict(error),
        event._scrubbed,
    )


def run_from_wire(wire: RunWire) -> tuple[RunResult, str | None]:
    """The run (and its org) that ``wire`` describes, ready for ``HistoryStore.encode``."""
    if wire[0] == _UNAVAILABLE:
        _, run_id, org_id, flow_id, status, path, ended_by, duration_ms, started_at = wire
        lost = {"code": "history_unavailable", "message": "the run's details were not kept"}
        return RunResult(
            run_id, flow_id, status, path, {}, lost, [], ended_by, duration_ms, NULL_SCRUBBER,
            started_at,
        ), org_id  # fmt: skip
    (_, run_id, org_id, flow_id, status, path, vars_, error, events, ended_by, duration_ms,
     secrets, started_at, started_perf) = wire  # fmt: skip
    scrubber = scrubber_for(tuple(secrets)) if secrets else NULL_SCRUBBER
    rebuilt = []
    for event in events:
        node_id, node_type, started, took, route, case_index, changed, shipped, fault, done = event
        kind, detail = shipped
        rebuilt.append(
            NodeEvent(
                node_id,
                node_type,
                started,
                took,
                route,
                case_index,
                changed,
                CallTrace.from_wire(detail) if kind == _CALL else detail,
                fault,
                scrubber,
                done,
            )
        )
    status_: RunStatus = status
    result = RunResult(
        run_id, flow_id, status_, path, vars_, error, rebuilt, ended_by, duration_ms, scrubber,
        started_at, started_perf,
    )  # fmt: skip
    return result, org_id


def plain(value: Any) -> Any:
    """``value`` with what ``marshal`` cannot write made into what history stores for it.

    Subclasses of str, int, float, dict and list become the base type (JSON writes them so);
    other objects become ``"<TypeName>"``, as ``store.history`` writes a value JSON cannot
    encode (never its ``str()``, which could hold an unscrubbed value). Data nested past the
    interpreter's recursion limit raises ``RecursionError``, as encoding it would: such a run
    is sent without its values (``unavailable_wire``).
    """
    if value is None or type(value) in _ATOMS:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return frozenset(plain(v) for v in value)
    return f"<{type(value).__name__}>"


_ATOMS = frozenset({str, int, float, bool, bytes})
