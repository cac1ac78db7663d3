"""Run history end to end: an upstream echoes every request back, and no secret survives in
`callout runs show --json`, the database file or the logs, in any form it could take."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web

from callout.testing import serve_app
from tests.cli_helpers import run_callout

SECRETS = {
    "token": "tok_Live+9/Zq==",
    "bodyKey": 'bk"quote\\slash-77',
    "password": "pässwörd-Ünï",
    "apiKey": "ak&x=1 y+z",
}
AD_HOC = "adhoc-ToKen/77+x"

SPEC = {
    "slug": "echo-api",
    "name": "Echo",
    "connection": {
        "config": {
            "type": "object",
            "required": ["baseUrl"],
            "properties": {"baseUrl": {"type": "string"}},
        },
        "secrets": {name: {"description": name} for name in SECRETS},
        "auth": {"type": "bearer", "token": "{{secret.token}}"},
        "allowedOrigins": ["{{conn.baseUrl}}"],
    },
    "operations": {
        "bearerAndBody": {
            "method": "POST",
            "url": "{{conn.baseUrl}}/echo",
            "body": {"key": "{{secret.bodyKey}}", "who": "{{input.who}}"},
            "inputSchema": {"type": "object", "properties": {"who": {"type": "string"}}},
        },
        "basic": {
            "method": "GET",
            "url": "{{conn.baseUrl}}/echo",
            "auth": {"type": "basic", "username": "svc", "password": "{{secret.password}}"},
        },
        "queryKey": {
            "method": "GET",
            "url": "{{conn.baseUrl}}/echo",
            "auth": {"type": "query", "name": "api_key", "value": "{{secret.apiKey}}"},
        },
    },
}


def forms(secret: str) -> set[str]:
    """Every form a secret can take in a request, a response echo or a stored JSON document."""
    raw = secret.encode()
    found = {
        secret,
        base64.b64encode(raw).decode(),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
    }
    if secret == SECRETS["password"]:
        found |= {
            base64.b64encode(f"svc:{secret}".encode()).decode(),
            base64.b64encode(f"svc:{secret}".encode("latin-1")).decode(),
        }
    return found


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.json_response(
            {
                "url": str(request.url),
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    return app


def integration_node(node_id: str, operation: str, to: str, connection_id: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "apiCall",
        "on": {"__next": to},
        "config": {
            "mode": "integration",
            "integrationSlug": "echo-api",
            "integrationVersion": 1,
            "operationKey": operation,
            "connectionId": connection_id,
            "inputs": {"who": "{{event.from}}"} if operation == "bearerAndBody" else {},
            "outputMappings": {"seen": "@"},
        },
    }


@pytest.mark.parametrize("writer", ["inline", "process"])
async def test_no_secret_survives_in_history_database_or_logs(tmp_path: Path, writer: str) -> None:
    """Secrets used as bearer token, Basic password, query key and JSON body value, and an
    ad-hoc bearer token, all echoed back by the upstream, appear nowhere afterwards, whether
    history is written in the command's process or handed to a writer process."""
    data = tmp_path / "data"
    env = {
        "CALLOUT_HISTORY_WRITER": writer,
        "CALLOUT_DATA_DIR": str(data),
        "CALLOUT_EGRESS_ALLOW": "127.0.0.1/32",
        "CALLOUT_LOG_LEVEL": "DEBUG",
        "CALLOUT_MASTER_KEYS": "",
    }

    async def callout(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        return await run_callout(*args, env=env, stdin=stdin)

    spec_file = tmp_path / "echo.json"
    spec_file.write_text(json.dumps(SPEC))
    async with serve_app(echo_app()) as up:
        logs = [await callout("init"), await callout("spec", "publish", str(spec_file))]
        rc, out, err = await callout(
            "conn",
            "create",
            "--org",
            "org1",
            "--integration",
            "echo-api",
            "--name",
            "echo",
            "--config",
            json.dumps({"baseUrl": up.origin}),
            "--secrets-stdin",
            "--json",
            stdin=json.dumps(SECRETS).encode(),
        )
        assert rc == 0, err
        connection_id = json.loads(out)["id"]
        flow = {
            "id": "echo-flow",
            "nodes": [
                {"id": "start", "type": "onFlowStart", "on": {"__next": "one"}},
                integration_node("one", "bearerAndBody", "two", connection_id),
                integration_node("two", "basic", "three", connection_id),
                integration_node("three", "queryKey", "adhoc", connection_id),
                {
                    "id": "adhoc",
                    "type": "apiCall",
                    "on": {"__next": "copy"},
                    "config": {
                        "mode": "http",
                        "method": "POST",
                        "url": up.url("/echo"),
                        "auth": {"type": "bearer", "token": AD_HOC},
                        "body": {"t": AD_HOC},
                    },
                },
                {
                    "id": "copy",
                    "type": "setVariable",
                    "config": {
                        "name": "copied",
                        "value": "{{vars.httpResult.headers.Authorization}}",
                    },
                },
            ],
        }
        flow_file = tmp_path / "flow.json"
        flow_file.write_text(json.dumps(flow))
        run = await callout(
            "run", str(flow_file), "--org", "org1", "--event", '{"from": "+15551230001"}', "--json"
        )
        readable = await callout(
            "run", str(flow_file), "--org", "org1", "--event", '{"from": "+15551230001"}'
        )
        logs += [run, readable]
    result = json.loads(run[1])
    assert result["status"] == "completed"
    assert result["path"] == ["start", "one", "two", "three", "adhoc", "copy"]
    assert result["vars"]["integrationOk"] is True
    rc, shown, _ = await callout("runs", "show", result["runId"], "--org", "org1", "--json")
    _, listed, _ = await callout("runs", "list", "--org", "org1", "--json")
    stored = json.loads(shown)
    assert rc == 0
    assert [e["nodeId"] for e in stored["events"]] == result["path"]
    assert stored["events"][1]["request"]["method"] == "POST"
    assert len(json.loads(listed)) == 2
    assert "[REDACTED]" in stored["events"][1]["response"]["preview"]  # the echo was there, masked
    database = b"".join(p.read_bytes() for p in data.glob("callout.db*"))
    printed = shown + "".join(out + err for _, out, err in logs)
    for secret in [*SECRETS.values(), AD_HOC]:
        for form in forms(secret):
            assert form not in printed, f"a form of a secret was printed: {form!r}"
            assert form.encode() not in database, f"a form of a secret was stored: {form!r}"
