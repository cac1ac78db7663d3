"""integrations/zendesk.yaml against a local server speaking Zendesk's Support (tickets) API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from callout.testing import Upstream, serve_app
from tests.catalog.helpers import assert_hidden, basic, compiled, run_operation

EMAIL = "agent@acme.com"
API_TOKEN = "6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"
AGENT_ID = 3600
FIRST_TICKET = 35436


@dataclass
class Zendesk:
    """One Zendesk account's state, as the server sees it."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Idempotency-Key -> the ticket id first created with it.
    keys: dict[str, int] = field(default_factory=dict)
    #: Answer this many ticket creations with 503 first (a transient outage).
    unavailable: int = 0


def zendesk_app(state: Zendesk) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        state.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        if basic(request.headers.get("Authorization")) != (f"{EMAIL}/token", API_TOKEN):
            return web.json_response({"error": "Couldn't authenticate you"}, status=401)
        if request.headers.get("Accept") != "application/json":
            return web.json_response({"error": "InvalidEndpoint"}, status=406)
        return await handler(request)

    def ticket_json(request: web.Request, ticket_id: int) -> dict[str, Any]:
        return {
            **state.tickets[ticket_id],
            "url": f"{request.url.origin()}/api/v2/tickets/{ticket_id}.json",
        }

    async def create(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response({"error": "Unsupported Media Type"}, status=415)
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in state.keys:
            ticket_id = state.keys[key]
            headers = {"x-idempotency-lookup": "hit"}
            return web.json_response(
                {"ticket": ticket_json(request, ticket_id)}, status=201, headers=headers
            )
        if state.unavailable > 0:
            state.unavailable -= 1
            return web.json_response(
                {"error": "ServiceUnavailable"}, status=503, headers={"Retry-After": "0"}
            )
        ticket = (await request.json()).get("ticket")
        if not isinstance(ticket, dict):
            return record_invalid(
                {"ticket": [{"description": "Ticket: is missing", "error": "BlankValue"}]}
            )
        subject = ticket.get("subject")
        comment = ticket.get("comment")
        problems: list[dict[str, str]] = []
        if not isinstance(subject, str) or not subject.strip():
            problems.append(
                {
                    "description": "Subject: cannot be blank",
                    "error": "BlankValue",
                    "field_key": "subject",
                }
            )
        if not isinstance(comment, dict) or not str(comment.get("body", "")).strip():
            problems.append(
                {
                    "description": "Description: cannot be blank",
                    "error": "BlankValue",
                    "field_key": "description",
                }
            )
        if ticket.get("priority") not in (None, "urgent", "high", "normal", "low"):
            problems.append(
                {
                    "description": "Priority: is invalid",
                    "error": "InvalidValue",
                    "field_key": "priority",
                }
            )
        if problems:
            return record_invalid({"base": problems})
        requester = ticket.get("requester") or {}
        ticket_id = FIRST_TICKET + len(state.tickets)
        state.tickets[ticket_id] = {
            "id": ticket_id,
            "external_id": ticket.get("external_id"),
            "type": ticket.get("type"),
            "subject": subject,
            "raw_subject": subject,
            "description": str(comment["body"]) if isinstance(comment, dict) else None,
            "priority": ticket.get("priority"),
            "status": "new",
            "requester_id": 20978392 if requester.get("email") else AGENT_ID,
            "submitter_id": AGENT_ID,
            "assignee_id": None,
            "tags": [],
            "created_at": "2024-06-03T14:12:09Z",
            "updated_at": "2024-06-03T14:12:09Z",
        }
        if key is not None:
            state.keys[key] = ticket_id
        location = f"{request.url.origin()}/api/v2/tickets/{ticket_id}.json"
        headers = (
            {"Location": location, "x-idempotency-lookup": "miss"}
            if key
            else {"Location": location}
        )
        return web.json_response(
            {"ticket": ticket_json(request, ticket_id)}, status=201, headers=headers
        )

    async def show(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        if ticket_id not in state.tickets:
            return web.json_response(
                {"error": "RecordNotFound", "description": "Not found"}, status=404
            )
        return web.json_response({"ticket": ticket_json(request, ticket_id)})

    async def me(request: web.Request) -> web.Response:
        user = {
            "id": AGENT_ID,
            "url": f"{request.url.origin()}/api/v2/users/{AGENT_ID}.json",
            "name": "Acme Agent",
            "email": EMAIL,
            "role": "agent",
            "active": True,
            "verified": True,
        }
        return web.json_response({"user": user})

    app = web.Application(middlewares=[authenticate])
    app.router.add_post("/api/v2/tickets", create)
    app.router.add_get("/api/v2/tickets/{ticket_id:[0-9]+}", show)
    app.router.add_get("/api/v2/users/me", me)
    return app


def record_invalid(details: dict[str, Any]) -> web.Response:
    """Zendesk's documented 422 for a ticket that fails validation."""
    body = {"error": "RecordInvalid", "description": "Record validation errors", "details": details}
    return web.json_response(body, status=422)


@pytest.fixture
async def zendesk() -> AsyncIterator[tuple[Upstream, Zendesk]]:
    state = Zendesk()
    async with serve_app(zendesk_app(state)) as up:
        yield up, state


async def call(
    up: Upstream, operation: str, inputs: dict[str, Any], token: str = API_TOKEN, **kw: Any
) -> Any:
    return await run_operation(
        "zendesk",
        operation,
        inputs,
        config={"baseUrl": up.origin, "email": EMAIL},
        secrets={"apiToken": token},
        **kw,
    )


TICKET_INPUTS = {
    "subject": "Callback requested by {{event.from}}",
    "comment": "Caller asked for a callback about invoice {{vars.invoice}}.",
    "priority": "high",
    "type": "question",
    "externalId": "{{event.callId}}",
    "requesterName": "{{vars.firstName}} {{vars.lastName}}",
    "requesterEmail": "{{vars.email}}",
    "idempotencyKey": "ticket-{{event.callId}}",
}
EVENT = {"from": "+15551230001", "callId": "CA9f3e2d1c"}
VARS = {
    "invoice": "INV-2291",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
}


def test_spec_compiles_and_needs_the_account_url_and_agent_email() -> None:
    """The spec compiles; a connection must name its Zendesk URL and the agent's email."""
    spec = compiled("zendesk")
    assert set(spec.operations) == {"createTicket", "getTicket", "me"}
    assert spec.test_operation == "me"
    assert spec.secret_names == {"apiToken"}
    spec.validate_config({"baseUrl": "https://acme.zendesk.com", "email": EMAIL})
    for config in (
        {},
        {"baseUrl": "https://acme.zendesk.com"},
        {"baseUrl": "acme", "email": EMAIL},
    ):
        with pytest.raises(Exception, match="config"):
            spec.validate_config(config)
    origins = spec.render_allowed_origins({"baseUrl": "https://acme.zendesk.com"})
    assert origins == {"https://acme.zendesk.com:443"}
    assert spec.operations["createTicket"].retry is None


async def test_create_ticket_sends_the_documented_request(zendesk: Any) -> None:
    """POST /api/v2/tickets with email/token Basic auth and a {ticket: ...} body; 201 maps."""
    up, state = zendesk
    result = await call(up, "createTicket", TICKET_INPUTS, event=EVENT, vars=VARS)
    request = state.seen[0]
    assert (request["method"], request["path"]) == ("POST", "/api/v2/tickets")
    assert basic(request["headers"]["Authorization"]) == (f"{EMAIL}/token", API_TOKEN)
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["Idempotency-Key"] == "ticket-CA9f3e2d1c"
    assert json.loads(request["body"]) == {
        "ticket": {
            "subject": "Callback requested by +15551230001",
            "comment": {"body": "Caller asked for a callback about invoice INV-2291."},
            "priority": "high",
            "type": "question",
            "external_id": "CA9f3e2d1c",
            "requester": {"name": "Ada Lovelace", "email": "ada@example.com"},
        }
    }
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (201, True, None)
    assert (v["ticketId"], v["ticketStatus"]) == (FIRST_TICKET, "new")
    assert (v["zendeskError"], v["zendeskErrorDescription"]) == (None, None)
    assert_hidden(result, API_TOKEN, f"{EMAIL}/token:{API_TOKEN}")


async def test_optional_fields_are_sent_as_null(zendesk: Any) -> None:
    """Without priority, type or externalId the ticket carries nulls, which Zendesk accepts."""
    up, state = zendesk
    inputs = {k: v for k, v in TICKET_INPUTS.items() if k not in ("priority", "type", "externalId")}
    result = await call(up, "createTicket", inputs, event=EVENT, vars=VARS)
    ticket = json.loads(state.seen[0]["body"])["ticket"]
    assert (ticket["priority"], ticket["type"], ticket["external_id"]) == (None, None, None)
    assert result.vars["ticketId"] == FIRST_TICKET


async def test_the_same_idempotency_key_returns_the_first_ticket(zendesk: Any) -> None:
    """Running the node twice for one call opens one ticket: Zendesk replays the first."""
    up, state = zendesk
    first = await call(up, "createTicket", TICKET_INPUTS, event=EVENT, vars=VARS)
    again = await call(up, "createTicket", TICKET_INPUTS, event=EVENT, vars=VARS)
    assert first.vars["ticketId"] == again.vars["ticketId"] == FIRST_TICKET
    assert len(state.tickets) == 1


async def test_a_node_may_opt_in_to_retries_thanks_to_the_key(zendesk: Any) -> None:
    """A 503 then a 201: the retried POST carries the same key, so one ticket exists."""
    up, state = zendesk
    state.unavailable = 1
    result = await call(
        up, "createTicket", TICKET_INPUTS, event=EVENT, vars=VARS, retry={"attempts": 2}
    )
    assert (result.vars["integrationStatus"], result.vars["ticketId"]) == (201, FIRST_TICKET)
    assert result.event.details()["attempts"] == 2
    assert [s["headers"]["Idempotency-Key"] for s in state.seen] == ["ticket-CA9f3e2d1c"] * 2
    assert len(state.tickets) == 1


async def test_record_invalid_is_a_422_mapped_for_routing(zendesk: Any) -> None:
    """A blank subject gets Zendesk's RecordInvalid 422; zendeskError says so, ticketId is null."""
    up, state = zendesk
    result = await call(
        up,
        "createTicket",
        {**TICKET_INPUTS, "subject": "   "},
        event=EVENT,
        vars=VARS,
        cases=[{"path": "outcome", "op": "eq", "value": "4xx", "nodeId": "ticketRefused"}],
    )
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"]) == (422, False)
    assert (v["zendeskError"], v["zendeskErrorDescription"]) == (
        "RecordInvalid",
        "Record validation errors",
    )
    assert v["ticketId"] is None
    assert result.route == "ticketRefused"
    assert state.tickets == {}


async def test_a_wrong_token_is_zendesks_401(zendesk: Any) -> None:
    """A bad API token gets 401 "Couldn't authenticate you"; the token never shows."""
    up, _ = zendesk
    wrong = "Zk0000000000000000000000000000000000000x"
    result = await call(up, "createTicket", TICKET_INPUTS, token=wrong, event=EVENT, vars=VARS)
    assert (result.vars["integrationStatus"], result.vars["integrationOk"]) == (401, False)
    assert result.vars["zendeskError"] == "Couldn't authenticate you"
    assert_hidden(result, wrong, f"{EMAIL}/token:{wrong}")


async def test_get_ticket_reads_its_status(zendesk: Any) -> None:
    """getTicket reads a ticket created earlier, by its numeric id."""
    up, state = zendesk
    created = await call(up, "createTicket", TICKET_INPUTS, event=EVENT, vars=VARS)
    result = await call(up, "getTicket", {"ticketId": "{{vars.ticketId}}"}, vars=created.vars)
    assert (state.seen[-1]["method"], state.seen[-1]["path"]) == (
        "GET",
        f"/api/v2/tickets/{FIRST_TICKET}",
    )
    v = result.vars
    assert (v["ticketId"], v["ticketStatus"], v["ticketPriority"]) == (FIRST_TICKET, "new", "high")


async def test_connection_test_operation_runs(zendesk: Any) -> None:
    """The spec's connection test shows the user the token acts as."""
    up, state = zendesk
    spec = compiled("zendesk")
    assert spec.test_operation is not None
    result = await call(up, spec.test_operation, {})
    assert (state.seen[0]["method"], state.seen[0]["path"]) == ("GET", "/api/v2/users/me")
    assert (result.vars["zendeskUserId"], result.vars["zendeskRole"]) == (AGENT_ID, "agent")
    assert_hidden(result, API_TOKEN, f"{EMAIL}/token:{API_TOKEN}")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requesterEmail": "not-an-email"}, "inputs.requesterEmail"),
        ({"priority": "critical"}, "inputs.priority"),
        ({"idempotencyKey": "k" * 256}, "inputs.idempotencyKey"),
        ({"comment": ""}, "inputs.comment"),
    ],
)
async def test_inputs_zendesk_would_refuse_are_caught_before_sending(
    zendesk: Any, change: dict[str, Any], field: str
) -> None:
    """A bad email, an unknown priority, an over-long key or an empty comment never leave."""
    up, state = zendesk
    result = await call(up, "createTicket", {**TICKET_INPUTS, **change}, event=EVENT, vars=VARS)
    assert result.vars["integrationError"]["code"] == "input_invalid"
    assert field in result.vars["integrationError"]["message"]
    assert state.seen == []
