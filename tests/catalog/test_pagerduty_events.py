"""integrations/pagerduty-events.yaml against a local server speaking PagerDuty's Events API v2."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from callout.testing import Upstream, serve_app
from tests.catalog.helpers import assert_hidden, compiled, run_operation

ROUTING_KEY = "R0c5a1f9e2d84b7c93e6f1a2b3c4d5e6"  # 32 characters, as PagerDuty requires
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class PagerDuty:
    seen: list[dict[str, Any]] = field(default_factory=list)
    #: dedup_key -> the alert's state ("triggered" or "resolved") and its trigger count.
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)


def invalid(*errors: str) -> web.Response:
    """PagerDuty's documented 400 for an event it cannot accept."""
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return web.json_response(body, status=400)


def event_errors(event: Any) -> list[str]:
    """What the Events API v2 would refuse in ``event``, per its documented parameters."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if event.get("event_action") not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if event.get("event_action") == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
            errors.append("'payload.summary' is missing or longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid")
    elif dedup is None:
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    return errors


def pagerduty_app(state: PagerDuty) -> web.Application:
    async def enqueue(request: web.Request) -> web.Response:
        raw = await request.read()
        state.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        if request.content_type != "application/json":
            return invalid("Content-Type must be application/json")
        try:
            event = json.loads(raw)
        except ValueError:
            return invalid("Request body is not valid JSON")
        errors = event_errors(event)
        if errors:
            return invalid(*errors)
        dedup = event.get("dedup_key") or str(uuid.uuid4())
        alert = state.alerts.get(dedup)
        if event["event_action"] == "trigger":
            if alert is None or alert["state"] == "resolved":
                state.alerts[dedup] = alert = {"state": "triggered", "triggers": 0}
            alert["triggers"] += 1
        elif alert is not None:
            alert["state"] = "resolved"
        answer = {"status": "success", "message": "Event processed", "dedup_key": dedup}
        return web.json_response(answer, status=202)

    app = web.Application()
    app.router.add_post("/v2/enqueue", enqueue)
    return app


@pytest.fixture
async def pagerduty() -> AsyncIterator[tuple[Upstream, PagerDuty]]:
    state = PagerDuty()
    async with serve_app(pagerduty_app(state)) as up:
        yield up, state


async def call(
    up: Upstream, operation: str, inputs: dict[str, Any], key: str = ROUTING_KEY, **kw: Any
) -> Any:
    return await run_operation(
        "pagerduty-events",
        operation,
        inputs,
        config={"baseUrl": up.origin},
        secrets={"routingKey": key},
        **kw,
    )


TRIGGER = {
    "summary": "VIP caller {{event.from}} waited 5 minutes without an agent",
    "source": "support-line-us",
    "severity": "critical",
    "dedupKey": "vip-wait-{{event.callId}}",
}
EVENT = {"from": "+15551230001", "callId": "CA9f3e2d1c"}


def test_spec_compiles_with_pagerduty_defaults() -> None:
    """The spec compiles; the routing key may go to https://events.pagerduty.com only."""
    spec = compiled("pagerduty-events")
    assert set(spec.operations) == {"triggerAlert", "resolveAlert"}
    assert spec.secret_names == {"routingKey"}
    assert spec.connection_auth.kind == "none"
    assert spec.render_allowed_origins({}) == {"https://events.pagerduty.com:443"}
    assert spec.test_operation is None  # no read exists, and a test trigger would page someone


async def test_trigger_sends_the_documented_event(pagerduty: Any) -> None:
    """The key travels in the body as routing_key; the 202 answer maps; history hides the key."""
    up, state = pagerduty
    result = await call(up, "triggerAlert", TRIGGER, event=EVENT)
    request = state.seen[0]
    assert (request["method"], request["path"]) == ("POST", "/v2/enqueue")
    assert request["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in request["headers"]
    assert json.loads(request["body"]) == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "vip-wait-CA9f3e2d1c",
        "client": "Callout",
        "payload": {
            "summary": "VIP caller +15551230001 waited 5 minutes without an agent",
            "source": "support-line-us",
            "severity": "critical",
        },
    }
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (202, True, None)
    assert (v["pagerdutyStatus"], v["pagerdutyDedupKey"]) == ("success", "vip-wait-CA9f3e2d1c")
    assert v["pagerdutyErrors"] is None
    assert_hidden(result, ROUTING_KEY)


async def test_trigger_then_resolve_with_the_same_dedup_key(pagerduty: Any) -> None:
    """A second trigger adds to the open alert; resolve closes it."""
    up, state = pagerduty
    await call(up, "triggerAlert", TRIGGER, event=EVENT)
    await call(up, "triggerAlert", TRIGGER, event=EVENT)
    resolved = await call(
        up, "resolveAlert", {"dedupKey": "vip-wait-{{event.callId}}"}, event=EVENT
    )
    assert json.loads(state.seen[-1]["body"]) == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "vip-wait-CA9f3e2d1c",
    }
    assert state.alerts == {"vip-wait-CA9f3e2d1c": {"state": "resolved", "triggers": 2}}
    assert (resolved.vars["integrationStatus"], resolved.vars["pagerdutyStatus"]) == (
        202,
        "success",
    )


async def test_a_malformed_routing_key_is_pagerdutys_400(pagerduty: Any) -> None:
    """A key of the wrong length gets "invalid event" with its errors mapped; no key shows."""
    up, _ = pagerduty
    short = "too-short-key-1234"
    result = await call(up, "triggerAlert", TRIGGER, key=short, event=EVENT)
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"]) == (400, False)
    assert v["pagerdutyStatus"] == "invalid event"
    assert v["pagerdutyErrors"] == [
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    ]
    assert_hidden(result, short)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"summary": "x" * 1025}, "inputs.summary"),
        ({"severity": "sev1"}, "inputs.severity"),
        ({"dedupKey": "k" * 256}, "inputs.dedupKey"),
    ],
)
async def test_inputs_pagerduty_would_refuse_are_caught_before_sending(
    pagerduty: Any, change: dict[str, Any], field: str
) -> None:
    """An over-long summary or dedup key, or an unknown severity, never leave."""
    up, state = pagerduty
    result = await call(up, "triggerAlert", {**TRIGGER, **change}, event=EVENT)
    assert result.vars["integrationError"]["code"] == "input_invalid"
    assert field in result.vars["integrationError"]["message"]
    assert state.seen == []
