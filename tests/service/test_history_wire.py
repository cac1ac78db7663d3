"""What the serving process hands the history writer process: a run sent as plain data is
stored exactly as the serving process would have stored it, for every kind of event and value."""

from __future__ import annotations

import json
import marshal
import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callout.engine.context import NodeEvent
from callout.engine.runner import RunResult
from callout.engine.wire import run_from_wire
from callout.scrub import NULL_SCRUBBER, Scrubber
from callout.service.history_process import run_bytes
from callout.store.history import HistoryStore
from tests.store.test_history_encode import (
    ECHO,
    PASSWORD,
    TOKEN,
    event,
    event_details,
    rows,
    run_of,
    store,
    trace,
)
from tests.test_scrub_json import values

__all__ = ["store"]  # the fixture, on each dialect


def sent(result: RunResult, org_id: str | None) -> tuple[RunResult, str | None]:
    """The run as the writer process makes it back from the bytes the recorder sends."""
    return run_from_wire(marshal.loads(run_bytes(result, org_id)))  # noqa: S302


def assert_stored_alike(store: HistoryStore, make: Callable[[], RunResult]) -> None:
    """``make()`` builds the run afresh: sending may materialise a host's own trace."""
    assert rows(store.encode, *sent(make(), "org-a")) == rows(store.encode, make(), "org-a")


class HostTrace:
    """A host's own node detail (the ``Trace`` protocol, no ``scrubber``): made into its
    scrubbed mapping before it is sent."""

    def as_dict(self, scrubber: Scrubber | None = None) -> dict[str, Any]:
        return (scrubber or NULL_SCRUBBER).data({"echo": ECHO, "token": TOKEN})

    def scrub(self, value: Any, scrubber: Scrubber | None = None) -> Any:
        return (scrubber or NULL_SCRUBBER).data(value)


class Opaque:
    """A host's own object in vars, which ``marshal`` cannot write."""

    def __str__(self) -> str:
        return f"opaque {TOKEN}"


class Tagged(str):
    """A str subclass (an enum-like value a host put in vars)."""


@pytest.mark.parametrize("with_secrets", [True, False], ids=["run-secrets", "no-run-secrets"])
@pytest.mark.parametrize(
    "kind",
    [
        "trace",
        "failed-trace",
        "mapping",
        "empty",
        "odd-values",
        "shadowing-key",
        "mapping-proxy",
        "host-trace",
        "foreign-objects",
    ],
)
def test_a_sent_run_is_stored_as_the_serving_process_would_store_it(
    store: HistoryStore, kind: str, with_secrets: bool
) -> None:
    """Every kind of event (a call's trace, a host node's mapping or own trace, nothing, values
    that are not strict JSON, objects marshal cannot write), with and without run secrets."""
    scrubber = Scrubber([TOKEN, PASSWORD]) if with_secrets else NULL_SCRUBBER
    own = Scrubber([TOKEN, PASSWORD])

    def make() -> RunResult:
        details: dict[str, Any] = {
            **event_details(own),
            "host-trace": HostTrace(),
            "foreign-objects": {"object": Opaque(), "tagged": Tagged(TOKEN), "tuple": (1, TOKEN)},
        }
        changed = {"copied": f"Bearer {TOKEN}", "n": 1, "inf": math.inf}
        vars_: dict[str, Any] = {"seen": ECHO, "copied": TOKEN}
        if kind == "foreign-objects":
            vars_ |= {"object": Opaque(), "tagged": Tagged(TOKEN)}
        error = {"code": "node_error", "message": f"failed with {TOKEN}", "nodeId": "b"}
        events = [
            event("a", details[kind], changed),
            event("b", MappingProxyType({}), {}, error if kind != "empty" else None, at=0.5),
        ]
        return run_of(events, scrubber, vars_, error)

    assert_stored_alike(store, make)


class BrokenTrace(HostTrace):
    """A host's own trace that fails when it is read."""

    def as_dict(self, scrubber: Scrubber | None = None) -> dict[str, Any]:
        raise RuntimeError(f"broken {TOKEN}")


def test_a_run_that_cannot_be_sent_is_stored_without_its_details(store: HistoryStore) -> None:
    """A host trace that raises when read: the run is still sent, with its path and status and
    a history_unavailable error (what the in-process recorder stores for a run it cannot
    encode), and nothing of the failure's message."""
    result = run_of([event("a", BrokenTrace(), {"n": 1})], NULL_SCRUBBER, {"v": TOKEN}, None)
    back, org_id = sent(result, "org-a")
    assert org_id == "org-a"
    assert (back.run_id, back.path, back.status) == (result.run_id, ["a"], "completed")
    assert back.error == {
        "code": "history_unavailable",
        "message": "the run's details were not kept",
    }
    assert (back.vars, back.events) == ({}, [])


def test_deeply_nested_values_marshal_cannot_write_are_sent_as_they_would_be_stored(
    store: HistoryStore,
) -> None:
    """A host object 150 lists deep, which marshal cannot write: stored alike."""

    def make() -> RunResult:
        deep: Any = Opaque()
        for _ in range(150):
            deep = [deep]
        return run_of([event("a", {"deep": deep}, {})], NULL_SCRUBBER, {"deep": deep}, None)

    assert_stored_alike(store, make)


def without_sets(value: Any) -> Any:
    """``value`` with each set made a tuple: a set has no order, and the writer process, which
    hashes strings with another seed, may store its elements in another (see the test below)."""
    if isinstance(value, set | frozenset):
        return tuple(without_sets(v) for v in value)
    if isinstance(value, dict):
        return {k: without_sets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_sets(v) for v in value)
    return value


def test_a_set_is_stored_with_the_same_elements(store: HistoryStore) -> None:
    """The elements of a set in vars are stored (scrubbed), in some order."""

    def make() -> RunResult:
        return run_of([], Scrubber([TOKEN]), {"tags": {"vip", TOKEN, 7}}, None)

    here, there = store.encode(make(), "o"), store.encode(*sent(make(), "o"))
    ours, theirs = (json.loads(encoded.run[10])["tags"] for encoded in (here, there))
    assert sorted(map(str, ours)) == sorted(map(str, theirs)) == ["7", "[REDACTED]", "vip"]


ANY_VALUE = values(TOKEN).map(without_sets)


@settings(max_examples=150, deadline=None)
@given(
    vars_=ANY_VALUE,
    changed=ANY_VALUE,
    detail=ANY_VALUE,
    echo=ANY_VALUE,
    with_secrets=st.booleans(),
)
def test_property_a_sent_run_is_stored_alike(
    store: HistoryStore, vars_: Any, changed: Any, detail: Any, echo: Any, with_secrets: bool
) -> None:
    """For any vars, changed vars, host detail and response body holding the token in any
    form, at any depth, as key or value (and bytes, NaN): the same rows."""
    scrubber = Scrubber([TOKEN]) if with_secrets else NULL_SCRUBBER
    mapping = detail if isinstance(detail, dict) else {"detail": detail}
    changed_map = changed if isinstance(changed, dict) else {"v": changed}

    def make() -> RunResult:
        events: list[NodeEvent] = [
            event("a", trace(Scrubber([TOKEN]), echo), dict(changed_map)),
            event("b", dict(mapping), dict(changed_map), at=1.0),
        ]
        return run_of(events, scrubber, vars_ if isinstance(vars_, dict) else {"v": vars_}, None)

    assert_stored_alike(store, make)
