"""HistoryStore.encode: the rows RunRecord.from_result gave write_batch, byte for byte, on both
databases; timestamps bound as SQLAlchemy binds them; nothing secret stored."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect

from callout.engine.call import CallResult, CallTrace
from callout.engine.context import NodeEvent
from callout.engine.runner import RunResult
from callout.errors import NetworkError, Outcome
from callout.scrub import NULL_SCRUBBER, Scrubber
from callout.store import history
from callout.store.db import Database
from callout.store.history import EncodedRun, HistoryStore, RunRecord
from callout.store.models import UTCDateTime
from callout.transport import InboundResponse, OutboundRequest
from tests.test_scrub_json import values

TOKEN = "tok-9f8e7d6c-SECRET"
PASSWORD = "pässwörd-Ünï"
URLS = {
    "sqlite": "sqlite+aiosqlite:///unused.db",
    "postgresql": "postgresql+asyncpg://nobody@127.0.0.1:1/unused",
}


@pytest.fixture(scope="module", params=list(URLS))
def store(request: pytest.FixtureRequest) -> HistoryStore:
    """A store on each dialect; encoding never touches the database, so none is opened."""
    return HistoryStore(Database(URLS[request.param]))


def trace(
    scrubber: Scrubber, echo: Any, *, failed: bool = False, more: dict[str, Any] | None = None
) -> CallTrace:
    """A call that sent the token as a bearer header, the password in its body and a key in its
    query string, and got ``echo`` back; its node's own detail has ``more`` too."""
    request = OutboundRequest(
        method="POST",
        url=f"https://user:{PASSWORD}@api.example.com/v1/x?api_key={TOKEN}&q=1",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Echo": f"t={TOKEN}", "Accept": "*/*"},
    )
    if failed:
        error = NetworkError(f"reset while sending {TOKEN}", code="connection_reset")
        result = CallResult(Outcome.NETWORK, 0, None, None, error, 2, 12.5)
    else:
        response = InboundResponse(200, {}, echo, 321, request.url, 1, 0, 3.25)
        result = CallResult(Outcome.S2XX, 200, echo, response, None, 1, 3.25)
    extra = {
        "mode": "integration",
        "integrationSlug": "crm",
        "connectionId": "conn_1",
        **(more or {}),
    }
    return CallTrace(request, result, scrubber, body={"password": PASSWORD, "n": 1}, extra=extra)


def event(node_id: str, detail: Any, changed: Any, error: Any = None, at: float = 0.0) -> NodeEvent:
    return NodeEvent(
        node_id=node_id,
        node_type="apiCall",
        started_at=1_780_000_000.123456 + at,
        duration_ms=2.4995,
        route="next",
        case_index=None,
        vars_changed=changed,
        detail=detail,
        error=error,
    )


def run_of(events: list[NodeEvent], scrubber: Scrubber, vars_: Any, error: Any) -> RunResult:
    result = RunResult(
        run_id="run_1",
        flow_id="f",
        status="failed" if error else "completed",
        path=[e.node_id for e in events],
        vars=vars_,
        error=error,
        events=events,
        duration_ms=7.5,
        scrubber=scrubber,
        started_at=1_780_000_000.0000005,
    )
    for e in events:
        e.run_scrubber = scrubber
    return result


def old_rows(store: HistoryStore, result: RunResult) -> EncodedRun:
    """What write_batch stored before encode(): from_result, then its own row building."""
    return store._encode_record(RunRecord.from_result(result, "org-a"))


def rows(encode: Any, *args: Any) -> Any:
    """The rows, or the class of the error that stopped them (a body preview of a set)."""
    try:
        encoded = encode(*args)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__
    return (encoded.run, encoded.events)


def assert_same_rows(store: HistoryStore, make: Any) -> None:
    """encode() (before and after the events are materialised) gives the old rows exactly."""
    new = rows(store.encode, make(), "org-a")
    result = make()
    assert new == rows(old_rows, store, result)
    if not isinstance(new, str):  # events already materialised by from_result
        assert rows(store.encode, result, "org-a") == new


ECHO = {
    "headers": {"Authorization": f"Bearer {TOKEN}"},
    "body": json.dumps({"password": PASSWORD}),
    "basic": "Basic " + base64.b64encode(f"svc:{PASSWORD}".encode()).decode(),
    "fine": ["vip", 1, None, 2.5],
}


def event_details(own: Scrubber) -> dict[str, Any]:
    """One node detail of each kind: a call's trace (answered or failed), a host node's mapping,
    nothing, values that are not strict JSON, a key shadowing an event key, a mapping proxy."""
    return {
        "trace": trace(own, ECHO),
        "failed-trace": trace(own, ECHO, failed=True),
        "mapping": {"seen": ECHO, TOKEN: "as a key", "n": 2},
        "empty": MappingProxyType({}),
        "odd-values": {"nan": math.nan, "raw": TOKEN.encode(), "set": {1}},
        "shadowing-key": {"nodeId": f"x-{TOKEN}", "durationMs": 9},
        "mapping-proxy": MappingProxyType({"copied": TOKEN}),
    }


@pytest.mark.parametrize("with_secrets", [True, False], ids=["run-secrets", "no-run-secrets"])
@pytest.mark.parametrize(
    "kind",
    ["trace", "failed-trace", "mapping", "empty", "odd-values", "shadowing-key", "mapping-proxy"],
)
def test_encode_gives_the_rows_from_result_gave(
    store: HistoryStore, kind: str, with_secrets: bool
) -> None:
    """Every kind of event (a call's trace, a host node's mapping, nothing, values that are not
    strict JSON, a detail key that shadows an event key), with and without run secrets."""
    scrubber = Scrubber([TOKEN, PASSWORD]) if with_secrets else NULL_SCRUBBER
    own = Scrubber([TOKEN, PASSWORD])

    def make() -> RunResult:
        details = event_details(own)
        changed = {
            "copied": f"Bearer {TOKEN}",
            "n": 1,
            "inf": math.inf if kind == "odd-values" else 1,
        }
        error = {"code": "node_error", "message": f"failed with {TOKEN}", "nodeId": "b"}
        events = [
            event("a", details[kind], changed),
            event("b", MappingProxyType({}), {}, error if kind != "empty" else None, at=0.5),
        ]
        return run_of(events, scrubber, {"seen": ECHO, "copied": TOKEN}, error)

    assert_same_rows(store, make)


@pytest.mark.parametrize("key", ["status", "request", "route", "varsChanged"])
def test_a_calls_node_detail_with_a_key_of_the_call_or_the_event_gives_the_same_rows(
    store: HistoryStore, key: str
) -> None:
    """A node's own detail naming a key the call's detail also writes (its value is replaced
    where it stands) or one of the event's (the event is built from its dict): the same rows."""
    scrubber = Scrubber([TOKEN, PASSWORD])

    def make() -> RunResult:
        call = trace(scrubber, ECHO, more={key: f"own {TOKEN}", "after": 1})
        return run_of([event("a", call, {"n": 1})], scrubber, {"n": 1}, None)

    assert_same_rows(store, make)


@settings(max_examples=150, deadline=None)
@given(
    vars_=values(TOKEN),
    changed=values(TOKEN),
    detail=values(TOKEN),
    echo=values(TOKEN),
    with_secrets=st.booleans(),
)
def test_property_encode_gives_the_rows_from_result_gave(
    store: HistoryStore, vars_: Any, changed: Any, detail: Any, echo: Any, with_secrets: bool
) -> None:
    """For any vars, changed vars, host detail and response body holding the token in any
    form, at any depth, as key or value (and bytes, sets, NaN): the same rows."""
    scrubber = Scrubber([TOKEN]) if with_secrets else NULL_SCRUBBER

    def make() -> RunResult:
        mapping = detail if isinstance(detail, dict) else {"detail": detail}
        changed_map = changed if isinstance(changed, dict) else {"v": changed}
        events = [
            event("a", trace(Scrubber([TOKEN]), echo), dict(changed_map)),
            event("b", dict(mapping), dict(changed_map), at=1.0),
        ]
        return run_of(events, scrubber, vars_ if isinstance(vars_, dict) else {"v": vars_}, None)

    assert_same_rows(store, make)


async def test_encoded_runs_read_back_as_from_result_runs(database: Database) -> None:
    """Written through encode() or through from_result, a run reads back the same, and holds no
    form of the secrets, on both databases."""
    store = HistoryStore(database)
    scrubber = Scrubber([TOKEN, PASSWORD])

    def make(run_id: str) -> RunResult:
        events = [event("a", trace(scrubber, ECHO), {"copied": TOKEN}), event("b", {}, {"n": 1})]
        result = run_of(events, scrubber, {"seen": ECHO}, None)
        result.run_id = run_id
        return result

    await store.write_batch([store.encode(make("new"), "org-a")])
    await store.write_batch([RunRecord.from_result(make("old"), "org-a")])
    new, old = await store.get("org-a", "new"), await store.get("org-a", "old")
    assert new is not None
    assert old is not None
    assert (new.started_at, new.vars, new.events) == (old.started_at, old.vars, old.events)
    assert [s.run_id for s in await store.list("org-a")] == ["old", "new"]  # same instant
    shown = json.dumps([new.vars, new.events], ensure_ascii=False)
    for secret in (TOKEN, PASSWORD, base64.b64encode(f"svc:{PASSWORD}".encode()).decode()):
        assert secret not in shown


DIALECTS = {"sqlite": aiosqlite_dialect(), "postgresql": asyncpg_dialect()}
AWARE = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
)


def sqlalchemy_binds(dialect_name: str) -> Any:
    dialect = DIALECTS[dialect_name]
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)


@settings(max_examples=300, deadline=None)
@given(when=AWARE, seconds=st.floats(min_value=0, max_value=253_000_000_000))
@example(when=datetime(2026, 5, 20, tzinfo=UTC), seconds=1_780_000_000.0000005)  # half a us
@example(when=datetime(2026, 5, 20, tzinfo=UTC), seconds=1_779_999_999.9999996)  # carries
@example(when=datetime(2026, 5, 20, tzinfo=UTC), seconds=0.0000025)
def test_property_timestamps_bind_as_sqlalchemy_binds_them(when: datetime, seconds: float) -> None:
    """For any aware datetime and any epoch float, the store's own conversion gives what the
    column type's bind processor gives, on both dialects (so reads, order and purge agree)."""
    for name, (stamp, epoch) in {
        "sqlite": (history._sqlite_stamp, history._sqlite_epoch_stamp),
        "postgresql": (history._aware_stamp, history._aware_epoch_stamp),
    }.items():
        binds = sqlalchemy_binds(name)
        assert stamp(when) == binds(when)
        assert epoch(seconds) == binds(datetime.fromtimestamp(seconds, UTC))


def test_naive_timestamps_are_refused() -> None:
    """A naive datetime is refused, as the column type refuses it."""
    for stamp in (history._sqlite_stamp, history._aware_stamp):
        with pytest.raises(ValueError, match="aware"):
            stamp(datetime(2026, 1, 1))
