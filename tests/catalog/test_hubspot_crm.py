"""integrations/hubspot-crm.yaml against a local server speaking HubSpot's CRM v3 contacts API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from callout.testing import Upstream, serve_app
from tests.catalog.helpers import assert_hidden, bearer, compiled, run_operation

TOKEN = "pat-na1-7c2e9f1a-4b3d-4e8a-9f60-1d2c3b4a5e6f"
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY"}
DEFAULT_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")

CONTACTS: list[dict[str, Any]] = [
    {
        "id": "512",
        "createdAt": "2023-06-01T09:30:00.000Z",
        "updatedAt": "2024-02-11T16:05:42.115Z",
        "archived": False,
        "properties": {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "email": "ada@example.com",
            "phone": "+15551230001",
            "mobilephone": None,
            "hs_lead_status": "OPEN",
            "lastmodifieddate": "2024-02-11T16:05:42.115Z",
        },
    },
    {
        "id": "733",
        "createdAt": "2022-01-15T12:00:00.000Z",
        "updatedAt": "2023-11-30T08:00:00.000Z",
        "archived": False,
        "properties": {
            "firstname": "Grace",
            "lastname": "Hopper",
            "email": "grace@example.com",
            "phone": "+15559870000",
            "mobilephone": "+15551230002",
            "hs_lead_status": "CONNECTED",
            "lastmodifieddate": "2023-11-30T08:00:00.000Z",
        },
    },
    {
        "id": "801",
        "createdAt": "2024-05-20T10:00:00.000Z",
        "updatedAt": "2024-05-21T10:00:00.000Z",
        "archived": False,
        "properties": {
            "firstname": "Grace",
            "lastname": "Duplicate",
            "email": "grace.b@example.com",
            "phone": "+15551230002",
            "mobilephone": None,
            "hs_lead_status": "NEW",
            "lastmodifieddate": "2024-05-21T10:00:00.000Z",
        },
    },
]


def hubspot_error(status: int, category: str, message: str) -> web.Response:
    """HubSpot's documented error body."""
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    return web.json_response(body, status=status)


def shaped(contact: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    """A contact as the API returns it: the asked properties plus the default ones."""
    names = dict.fromkeys([*wanted, *DEFAULT_PROPERTIES])
    props = {**contact["properties"], "hs_object_id": contact["id"]}
    props["createdate"] = contact["createdAt"]
    return {**contact, "properties": {n: props.get(n) for n in names}}


def search_problem(body: Any) -> str | None:
    """What HubSpot's search endpoint would refuse in ``body`` (documented limits), if anything."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    groups = body.get("filterGroups", [])
    if not isinstance(groups, list) or len(groups) > 5:
        return "filterGroups must be a list of at most 5 groups"
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or not 1 <= len(filters) <= 10:
            return "each filter group needs 1 to 10 filters"
        for f in filters:
            if not isinstance(f, dict) or f.get("operator") not in OPERATORS:
                return f"unknown filter operator in {f!r}"
            if not isinstance(f.get("propertyName"), str) or not isinstance(f.get("value"), str):
                return f"a filter needs a propertyName and a string value: {f!r}"
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or not 1 <= limit <= 200:
        return "limit must be between 1 and 200"
    if not all(isinstance(p, str) for p in body.get("properties", [])):
        return "properties must be a list of property names"
    return None


def hubspot_app(seen: list[dict[str, Any]]) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        if bearer(request.headers.get("Authorization")) != TOKEN:
            message = (
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
            )
            return hubspot_error(401, "INVALID_AUTHENTICATION", message)
        return await handler(request)

    async def search(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return hubspot_error(415, "VALIDATION_ERROR", "Content-Type must be application/json")
        body = await request.json()
        problem = search_problem(body)
        if problem is not None:
            return hubspot_error(400, "VALIDATION_ERROR", problem)

        def matches(contact: dict[str, Any], group: dict[str, Any]) -> bool:
            props = contact["properties"]
            return all(props.get(f["propertyName"]) == f["value"] for f in group["filters"])

        groups = body.get("filterGroups", [])
        found = [c for c in CONTACTS if not groups or any(matches(c, g) for g in groups)]
        for sort in reversed(body.get("sorts", [])):
            name = sort["propertyName"]

            def value(contact: dict[str, Any], name: str = name) -> str:
                return str(contact["properties"].get(name) or "")

            found.sort(key=value, reverse=sort.get("direction") == "DESCENDING")
        limit = body.get("limit", 10)
        page = [shaped(c, body.get("properties", [])) for c in found[:limit]]
        answer: dict[str, Any] = {"total": len(found), "results": page}
        if len(found) > limit:
            answer["paging"] = {"next": {"after": str(limit)}}
        return web.json_response(answer)

    async def read(request: web.Request) -> web.Response:
        wanted = request.query.get("properties", "").split(",")
        for contact in CONTACTS:
            if contact["id"] == request.match_info["contact_id"]:
                return web.json_response(shaped(contact, [w for w in wanted if w]))
        return hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found")

    async def listing(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "10"))
        page = [shaped(c, ["firstname", "lastname", "email"]) for c in CONTACTS[:limit]]
        after = {"after": str(limit), "link": f"{request.url.origin()}{request.path}?after={limit}"}
        return web.json_response({"results": page, "paging": {"next": after}})

    app = web.Application(middlewares=[authenticate])
    app.router.add_post("/crm/v3/objects/contacts/search", search)
    app.router.add_get("/crm/v3/objects/contacts/{contact_id}", read)
    app.router.add_get("/crm/v3/objects/contacts", listing)
    return app


@pytest.fixture
async def hubspot() -> AsyncIterator[tuple[Upstream, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    async with serve_app(hubspot_app(seen)) as up:
        yield up, seen


async def call(
    up: Upstream, operation: str, inputs: dict[str, Any], token: str = TOKEN, **kw: Any
) -> Any:
    return await run_operation(
        "hubspot-crm",
        operation,
        inputs,
        config={"baseUrl": up.origin},
        secrets={"accessToken": token},
        **kw,
    )


def test_spec_compiles_with_hubspot_defaults() -> None:
    """The spec compiles; a connection without baseUrl talks to https://api.hubapi.com only."""
    spec = compiled("hubspot-crm")
    assert set(spec.operations) == {"lookupContactByPhone", "getContact", "ping"}
    assert spec.test_operation == "ping"
    assert spec.secret_names == {"accessToken"}
    spec.validate_config({})
    assert spec.render_allowed_origins({}) == {"https://api.hubapi.com:443"}
    assert spec.operations["lookupContactByPhone"].retry is None  # a POST is never retried


async def test_lookup_by_phone_sends_the_documented_search(hubspot: Any) -> None:
    """The search goes out as HubSpot documents it and the contact's fields land in vars."""
    up, seen = hubspot
    result = await call(
        up, "lookupContactByPhone", {"phone": "{{event.from}}"}, event={"from": "+15551230001"}
    )
    request = seen[0]
    assert (request["method"], request["path"]) == ("POST", "/crm/v3/objects/contacts/search")
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {
        "filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+15551230001"}]},
            {
                "filters": [
                    {"propertyName": "mobilephone", "operator": "EQ", "value": "+15551230001"}
                ]
            },
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
        "properties": ["firstname", "lastname", "email", "phone", "mobilephone", "hs_lead_status"],
        "limit": 1,
    }
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (200, True, None)
    assert (v["contactId"], v["firstName"], v["lastName"]) == ("512", "Ada", "Lovelace")
    assert (v["email"], v["leadStatus"], v["contactCount"]) == ("ada@example.com", "OPEN", 1)
    assert v["hubspotErrorCategory"] is None
    assert_hidden(result, TOKEN)


async def test_mobile_phone_matches_and_the_latest_contact_wins(hubspot: Any) -> None:
    """A number stored as one contact's mobile and another's phone picks the latest updated."""
    up, _ = hubspot
    result = await call(up, "lookupContactByPhone", {"phone": "+15551230002"})
    assert result.vars["contactCount"] == 2
    assert (result.vars["contactId"], result.vars["lastName"]) == ("801", "Duplicate")


async def test_unknown_caller_routes_on_a_null_contact(hubspot: Any) -> None:
    """No match is a 200 with total 0: contactId is null and a case on it routes the caller."""
    up, _ = hubspot
    result = await call(
        up,
        "lookupContactByPhone",
        {"phone": "+15550000000"},
        cases=[{"path": "vars.contactId", "op": "exists", "nodeId": "greetKnown"}],
        on={"__next": "greetUnknown"},
    )
    assert result.vars["integrationOk"] is True
    assert (result.vars["contactCount"], result.vars["contactId"]) == (0, None)
    assert result.route == "greetUnknown"


async def test_a_revoked_token_is_a_4xx_with_hubspot_category(hubspot: Any) -> None:
    """HubSpot's 401 body maps to hubspotErrorCategory; the bad token is still scrubbed."""
    up, _ = hubspot
    revoked = "pat-na1-00000000-dead-beef-0000-000000000000"
    result = await call(up, "lookupContactByPhone", {"phone": "+15551230001"}, token=revoked)
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (401, False, None)
    assert result.event.details()["outcome"] == "4xx"
    assert v["hubspotErrorCategory"] == "INVALID_AUTHENTICATION"
    assert v["contactId"] is None
    assert_hidden(result, revoked)


async def test_get_contact_reads_by_id_with_properties(hubspot: Any) -> None:
    """getContact asks for the properties it maps and maps them from the object."""
    up, seen = hubspot
    result = await call(up, "getContact", {"contactId": "733"})
    assert seen[0]["path"] == "/crm/v3/objects/contacts/733"
    assert seen[0]["query"] == {
        "properties": "firstname,lastname,email,phone,mobilephone,hs_lead_status",
        "archived": "false",
    }
    assert (result.vars["contactId"], result.vars["firstName"]) == ("733", "Grace")
    assert result.vars["leadStatus"] == "CONNECTED"


async def test_get_contact_not_found_is_a_404(hubspot: Any) -> None:
    """An unknown id is HubSpot's 404 OBJECT_NOT_FOUND, not retried (404 is not transient)."""
    up, seen = hubspot
    result = await call(up, "getContact", {"contactId": "999"})
    assert (result.vars["integrationStatus"], result.vars["integrationOk"]) == (404, False)
    assert result.vars["hubspotErrorCategory"] == "OBJECT_NOT_FOUND"
    assert (len(seen), result.event.details()["attempts"]) == (1, 1)


async def test_connection_test_operation_runs(hubspot: Any) -> None:
    """The spec's connection test lists one contact with the token."""
    up, seen = hubspot
    spec = compiled("hubspot-crm")
    assert spec.test_operation is not None
    result = await call(up, spec.test_operation, {})
    assert (seen[0]["method"], seen[0]["path"]) == ("GET", "/crm/v3/objects/contacts")
    assert seen[0]["query"] == {"limit": "1", "archived": "false"}
    assert (result.vars["integrationStatus"], result.vars["integrationOk"]) == (200, True)
    assert_hidden(result, TOKEN)


@pytest.mark.parametrize("phone", ["5551230001", "+1 555 123 0001", "+0123", ""])
async def test_a_number_not_in_e164_is_refused_before_sending(hubspot: Any, phone: str) -> None:
    """inputSchema holds the phone to E.164, so a malformed number never reaches HubSpot."""
    up, seen = hubspot
    result = await call(up, "lookupContactByPhone", {"phone": phone})
    assert result.vars["integrationError"]["code"] == "input_invalid"
    assert "inputs.phone" in result.vars["integrationError"]["message"]
    assert seen == []
