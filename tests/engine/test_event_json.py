"""NodeEvent.as_json: the text of json.dumps(as_dict()), byte for byte, for real runs."""

from __future__ import annotations

import json
import math
from typing import Any

from callout.engine.context import NodeEvent, RunContext, Step
from callout.engine.engine import Engine
from callout.scrub import NULL_SCRUBBER, Scrubber
from callout.spec.flow import NodeSpec
from callout.testing import serve_app
from tests.engine.test_apicall_http import echo_app

TOKEN = "tok-Live-7Hq/Zx+9=="


def strict(event: NodeEvent) -> str | None:
    try:
        return json.dumps(event.as_dict(), allow_nan=False)
    except (TypeError, ValueError):
        return None


async def test_events_of_a_run_encode_as_their_dicts(engine: Engine) -> None:
    """A call echoing its bearer token, a node copying it, a host node reporting it in a
    mapping detail (and a key shadowing an event key): as_json is the dict's JSON, before and
    after the dict is built, and holds no token."""

    async def report(node: NodeSpec, ctx: RunContext) -> Step | None:
        seen = ctx.vars["httpResult"]["headers"]["Authorization"]
        shadow = {"nodeId": "other"} if node.config.get("shadow") else {}
        ctx.set_var("odd", math.nan if node.config.get("nan") else 1)
        return Step(detail={"seen": seen, f"k-{TOKEN}": 1, **shadow})

    engine.registry.simple("report")(report)
    async with serve_app(echo_app()) as up:
        doc = {
            "id": "f",
            "nodes": [
                {"id": "start", "type": "onFlowStart", "on": {"__next": "call"}},
                {
                    "id": "call",
                    "type": "apiCall",
                    "on": {"__next": "copy"},
                    "config": {
                        "mode": "http",
                        "method": "POST",
                        "url": up.url(f"/x?api_key={TOKEN}&q=1"),
                        "auth": {"type": "bearer", "token": TOKEN},
                        "body": {"t": TOKEN, "n": 1},
                    },
                },
                {
                    "id": "copy",
                    "type": "setVariable",
                    "on": {"__next": "r1"},
                    "config": {"name": "c", "value": "{{vars.httpResult.headers.Authorization}}"},
                },
                {"id": "r1", "type": "report", "on": {"__next": "r2"}, "config": {}},
                {"id": "r2", "type": "report", "on": {"__next": "r3"}, "config": {"shadow": 1}},
                {"id": "r3", "type": "report", "config": {"nan": 1}},
            ],
        }
        result = await engine.run_flow(doc)
    assert result.status == "completed", result.error
    events = result.events
    fast = [e.as_json() for e in events]
    assert fast[4] is None  # a detail key shadows an event key: history uses as_dict()
    assert fast[5] is None  # NaN: not strict JSON
    built = [strict(e) for e in events]
    assert fast[:4] == built[:4]
    assert [e.as_json() for e in events][:4] == built[:4]  # after details() ran too
    stored = "".join(f for f in fast if f is not None)
    assert TOKEN not in stored
    assert "[REDACTED]" in stored


async def test_a_node_run_alone_encodes_as_its_dict(engine: Engine) -> None:
    """The event of run_node (no flow) encodes the same way."""
    async with serve_app(echo_app()) as up:
        node: dict[str, Any] = {
            "id": "call",
            "type": "apiCall",
            "config": {
                "mode": "http",
                "url": up.url("/a"),
                "auth": {"type": "bearer", "token": TOKEN},
            },
        }
        result = await engine.run_node(node)
    text = result.event.as_json()
    assert text is not None
    assert text == strict(result.event)
    assert TOKEN not in text


class HostTrace:
    """A host platform's own Trace: ``as_dict`` and ``scrub``, no ``scrubber`` attribute."""

    def as_dict(self, scrubber: Scrubber | None = None) -> dict[str, Any]:
        return {"host": (scrubber or NULL_SCRUBBER).text(f"Bearer {TOKEN}")}

    def scrub(self, value: Any, scrubber: Scrubber | None = None) -> Any:
        return (scrubber or NULL_SCRUBBER).data(value)


async def test_a_host_trace_without_a_scrubber_is_encoded_through_as_dict(
    engine: Engine,
) -> None:
    """The Trace protocol asks for as_dict and scrub only: as_json falls back (None) for a trace
    that has no scrubber of its own, and as_dict still gives the event, masked."""

    async def traced(node: NodeSpec, ctx: RunContext) -> Step | None:
        ctx.set_var("seen", 1)
        return Step(detail=HostTrace())

    engine.registry.simple("traced")(traced)
    result = await engine.run_node({"id": "t", "type": "traced"})
    assert result.event.as_json() is None
    shown = strict(result.event)
    assert shown is not None
    assert json.loads(shown)["host"] == "Bearer [REDACTED]"
