"""``make run`` before the service exists: the bundled example flow against a demo CRM.

The demo CRM is a real HTTP server on 127.0.0.1; the egress guard admits exactly that address,
and only for this demo.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.guard import EgressPolicy
from callout.report import describe_run
from callout.testing import serve_app

__all__ = ["CALLERS", "demo_crm_app", "example_flow", "run_demo"]

#: The demo CRM's contacts, by phone number.
CALLERS: dict[str, dict[str, Any]] = {
    "+15551230001": {"id": "c-1001", "name": "Ada Lovelace", "tier": "gold"},
    "+15551230002": {"id": "c-1002", "name": "Grace Hopper", "tier": "silver"},
}


def example_flow() -> dict[str, Any]:
    """The bundled example flow (a caller lookup that routes on the result)."""
    text = resources.files("callout.examples").joinpath("caller-lookup.json").read_text()
    flow: dict[str, Any] = json.loads(text)
    return flow


def demo_crm_app(token: str) -> web.Application:
    """A CRM with one endpoint, ``GET /v1/contacts?phone=``, behind a bearer token."""

    async def contacts(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        contact = CALLERS.get(request.query.get("phone", ""))
        if contact is None:
            return web.json_response({"error": "no contact with that phone"}, status=404)
        return web.json_response(contact)

    app = web.Application()
    app.router.add_get("/v1/contacts", contacts)
    return app


async def run_demo(out: Callable[[str], None]) -> int:
    """Run the example flow for a gold, a silver and an unknown caller; print each account."""
    token = secrets.token_urlsafe(16)
    async with serve_app(demo_crm_app(token)) as crm:
        out(f"demo CRM listening on {crm.origin} (the egress guard admits 127.0.0.1 for this demo)")
        config = EngineConfig(egress=EgressPolicy.from_entries(["127.0.0.1/32"]))
        async with Engine(config) as engine:
            flow = engine.load_flow(example_flow())
            for caller in (*CALLERS, "+15559999999"):
                result = await engine.run_flow(
                    flow,
                    event={"from": caller, "to": "+18005550100"},
                    config={"crmBaseUrl": crm.origin, "crmToken": token},
                )
                out("")
                out(f"call from {caller}:")
                out(describe_run(result))
                out(f"  => queue: {result.vars.get('queue')}")
    return 0
