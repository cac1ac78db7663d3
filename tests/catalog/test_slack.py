"""integrations/slack.yaml against a local server speaking Slack's Web API (chat.postMessage)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from callout.testing import Upstream, serve_app
from tests.catalog.helpers import assert_hidden, bearer, compiled, run_operation

BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
CHANNELS = {"C123ABC456": "support", "C0PRIVATE1": "vip-escalations"}
BOT_USER = "U0BOT00001"
TS = "1503435956.000247"


def slack_app(seen: list[dict[str, Any]]) -> web.Application:
    """Slack's Web API as documented: always HTTP 200, ``ok`` says whether the call worked."""

    def fail(error: str, **extra: Any) -> web.Response:
        return web.json_response({"ok": False, "error": error, **extra})

    async def record(request: web.Request) -> tuple[str | None, Any]:
        raw = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        header = request.headers.get("Authorization")
        token = bearer(header)
        if header is None:
            return "not_authed", None
        if token != BOT_TOKEN:
            return "invalid_auth", None
        if not raw:
            return None, None
        content_type = request.headers.get("Content-Type", "")
        if request.content_type != "application/json":
            return "invalid_form_data", None
        if "charset=utf-8" not in content_type.replace(" ", "").lower():
            return "missing_charset", None
        try:
            return None, json.loads(raw)
        except ValueError:
            return "invalid_json", None

    async def post_message(request: web.Request) -> web.Response:
        error, args = await record(request)
        if error is not None and error != "missing_charset":
            return fail(error)
        args = args or {}
        channel = args.get("channel")
        channel_id = next(
            (cid for cid, name in CHANNELS.items() if channel in (cid, f"#{name}")), None
        )
        if channel_id is None:
            return fail("channel_not_found")
        text, blocks = args.get("text"), args.get("blocks")
        if not text and not blocks:
            return fail("no_text")
        if blocks is not None and (
            not isinstance(blocks, list)
            or not all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            return fail("invalid_blocks")
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "ts": TS if "thread_ts" not in args else "1503435999.000100",
            "user": BOT_USER,
            "bot_id": "B0BOT00001",
        }
        if blocks is not None:
            message["blocks"] = blocks
        if "thread_ts" in args:
            message["thread_ts"] = args["thread_ts"]
        answer = {"ok": True, "channel": channel_id, "ts": message["ts"], "message": message}
        if error == "missing_charset":
            answer["warning"] = "missing_charset"
            answer["response_metadata"] = {"warnings": ["missing_charset"]}
        return web.json_response(answer)

    async def auth_test(request: web.Request) -> web.Response:
        error, _ = await record(request)
        if error is not None:
            return fail(error)
        return web.json_response(
            {
                "ok": True,
                "url": "https://acme-support.slack.com/",
                "team": "Acme Support",
                "user": "callout",
                "team_id": "T12345678",
                "user_id": BOT_USER,
                "bot_id": "B0BOT00001",
                "is_enterprise_install": False,
            }
        )

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_post("/api/auth.test", auth_test)
    return app


@pytest.fixture
async def slack() -> AsyncIterator[tuple[Upstream, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    async with serve_app(slack_app(seen)) as up:
        yield up, seen


async def call(
    up: Upstream, operation: str, inputs: dict[str, Any], token: str = BOT_TOKEN, **kw: Any
) -> Any:
    return await run_operation(
        "slack",
        operation,
        inputs,
        config={"baseUrl": up.url("/api")},
        secrets={"botToken": token},
        **kw,
    )


ROUTED: dict[str, Any] = {
    "cases": [{"path": "vars.slackOk", "op": "eq", "value": False, "nodeId": "slackFailed"}],
    "on": {"__next": "posted"},
}


def test_spec_compiles_with_slack_defaults() -> None:
    """The spec compiles; a connection without baseUrl talks to https://slack.com only."""
    spec = compiled("slack")
    assert set(spec.operations) == {"postMessage", "postBlocks", "replyInThread", "authTest"}
    assert spec.test_operation == "authTest"
    assert spec.secret_names == {"botToken"}
    spec.validate_config({})
    assert spec.render_allowed_origins({}) == {"https://slack.com:443"}
    assert all(op.retry is None for op in spec.operations.values())  # posting is not idempotent


async def test_post_message_sends_the_documented_request(slack: Any) -> None:
    """chat.postMessage gets a bearer bot token, a UTF-8 JSON body; ok/channel/ts land in vars."""
    up, seen = slack
    result = await call(
        up,
        "postMessage",
        {"channel": "C123ABC456", "text": "Missed call from {{event.from}} — call back ☎"},
        event={"from": "+15551230001"},
        **ROUTED,
    )
    request = seen[0]
    assert (request["method"], request["path"]) == ("POST", "/api/chat.postMessage")
    assert request["headers"]["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request["body"].decode("utf-8")) == {
        "channel": "C123ABC456",
        "text": "Missed call from +15551230001 — call back ☎",
    }
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"], v["integrationError"]) == (200, True, None)
    assert (v["slackOk"], v["slackError"]) == (True, None)
    assert (v["slackChannel"], v["slackTs"]) == ("C123ABC456", TS)
    assert result.route == "posted"
    assert_hidden(result, BOT_TOKEN)


@pytest.mark.parametrize(
    ("channel", "token", "error"),
    [
        ("C999NOPE99", BOT_TOKEN, "channel_not_found"),
        ("C123ABC456", "xoxb-revoked-0000", "invalid_auth"),
    ],
)
async def test_ok_false_arrives_as_http_200_and_routes_on_slack_ok(
    slack: Any, channel: str, token: str, error: str
) -> None:
    """Slack reports failure in the body: integrationOk is true, slackOk false routes the flow."""
    up, _ = slack
    result = await call(
        up, "postMessage", {"channel": channel, "text": "hi"}, token=token, **ROUTED
    )
    v = result.vars
    assert (v["integrationStatus"], v["integrationOk"]) == (200, True)
    assert (v["slackOk"], v["slackError"]) == (False, error)
    assert (v["slackTs"], v["slackChannel"]) == (None, None)
    assert result.route == "slackFailed"
    assert_hidden(result, token)


async def test_post_blocks_sends_blocks_as_json_data(slack: Any) -> None:
    """Blocks from a variable go out as a JSON array, with text kept as the fallback."""
    up, seen = slack
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "VIP escalation"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Caller:* +15551230001"}},
    ]
    result = await call(
        up,
        "postBlocks",
        {"channel": "#vip-escalations", "text": "VIP escalation", "blocks": "{{vars.blocks}}"},
        vars={"blocks": blocks},
    )
    assert json.loads(seen[0]["body"]) == {
        "channel": "#vip-escalations",
        "text": "VIP escalation",
        "blocks": blocks,
    }
    assert (result.vars["slackOk"], result.vars["slackChannel"]) == (True, "C0PRIVATE1")


async def test_reply_in_thread_uses_the_parent_ts(slack: Any) -> None:
    """replyInThread sends thread_ts, e.g. the ts an earlier postMessage left in vars.slackTs."""
    up, seen = slack
    result = await call(
        up,
        "replyInThread",
        {"channel": "C123ABC456", "text": "Called back, resolved", "threadTs": "{{vars.slackTs}}"},
        vars={"slackTs": TS},
    )
    assert json.loads(seen[0]["body"])["thread_ts"] == TS
    assert result.vars["slackOk"] is True


async def test_connection_test_operation_runs(slack: Any) -> None:
    """The spec's connection test is auth.test: it names the workspace the token belongs to."""
    up, seen = slack
    spec = compiled("slack")
    assert spec.test_operation is not None
    result = await call(up, spec.test_operation, {})
    assert (seen[0]["method"], seen[0]["path"]) == ("POST", "/api/auth.test")
    assert seen[0]["headers"]["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert (result.vars["slackOk"], result.vars["slackTeam"]) == (True, "Acme Support")
    assert result.vars["slackBotUserId"] == BOT_USER
    assert_hidden(result, BOT_TOKEN)


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"channel": "C123ABC456", "text": "x" * 40001}, "inputs.text"),
        ({"channel": "", "text": "hi"}, "inputs.channel"),
        ({"channel": "C123ABC456", "text": "hi", "threadTs": "yesterday"}, "inputs.threadTs"),
    ],
)
async def test_inputs_slack_would_refuse_are_caught_before_sending(
    slack: Any, inputs: dict[str, Any], field: str
) -> None:
    """Over-long text, an empty channel or a malformed thread ts never reach Slack."""
    up, seen = slack
    operation = "replyInThread" if "threadTs" in inputs else "postMessage"
    result = await call(up, operation, inputs)
    assert result.vars["integrationError"]["code"] == "input_invalid"
    assert field in result.vars["integrationError"]["message"]
    assert seen == []
