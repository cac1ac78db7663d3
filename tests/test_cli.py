"""The callout command, run as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callout.demo import CALLERS, demo_crm_app, example_flow
from callout.testing import serve_app
from tests.cli_helpers import run_callout


async def callout(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_callout(*args, env=env)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's commands keep their database and key in a directory of their own."""
    path = tmp_path / "data"
    monkeypatch.setenv("CALLOUT_DATA_DIR", str(path))
    return path


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(example_flow()))
    return path


async def test_run_json_prints_status_path_vars_and_error(flow_file: Path) -> None:
    """`callout run --json` prints one object with the route the example flow took."""
    async with serve_app(demo_crm_app("tok-1234")) as crm:
        code, out, _ = await callout(
            "run",
            str(flow_file),
            "--event",
            json.dumps({"from": "+15551230001"}),
            "--config",
            json.dumps({"crmBaseUrl": crm.origin, "crmToken": "tok-1234"}),
            "--json",
            env={"CALLOUT_EGRESS_ALLOW": "127.0.0.1/32"},
        )
    result = json.loads(out)
    assert code == 0
    assert result["status"] == "completed"
    assert result["path"] == ["start", "lookup", "tier", "vipQueue"]
    assert result["vars"]["crm"] == CALLERS["+15551230001"]
    assert result["error"] is None


async def test_run_readable_account_shows_the_route_and_hides_the_token(flow_file: Path) -> None:
    """Without --json the account names each node, the call and the case; no token shows."""
    async with serve_app(demo_crm_app("tok-secret-5678")) as crm:
        code, out, _ = await callout(
            "run",
            str(flow_file),
            "--event",
            json.dumps({"from": "+15559999999"}),
            "--config",
            json.dumps({"crmBaseUrl": crm.origin, "crmToken": "tok-secret-5678"}),
            env={"CALLOUT_EGRESS_ALLOW": "127.0.0.1/32"},
        )
    assert code == 0
    assert "status 404, outcome 4xx" in out
    assert "-> unknownCaller" in out
    assert "tok-secret-5678" not in out


async def test_run_without_allow_list_is_blocked_and_routes_to_fallback(flow_file: Path) -> None:
    """With no allow-list the guard blocks 127.0.0.1 and the flow takes its default edge."""
    async with serve_app(web.Application()) as up:
        code, out, _ = await callout(
            "run",
            str(flow_file),
            "--event",
            '{"from": "+1"}',
            "--config",
            json.dumps({"crmBaseUrl": up.origin, "crmToken": "t-1234"}),
            "--json",
            env={"CALLOUT_EGRESS_ALLOW": ""},
        )
    result = json.loads(out)
    assert code == 0
    assert result["path"] == ["start", "lookup", "sorry"]
    assert result["vars"]["httpError"]["outcome"] == "blocked"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--event", "{not json"], 2, "--event is not valid JSON"),
        (["--vars", "[1]"], 2, "--vars must be a JSON object"),
    ],
)
async def test_run_usage_errors_exit_2(
    flow_file: Path, args: list[str], code: int, words: str
) -> None:
    """Bad JSON options are usage errors that say which option and how to fix it."""
    rc, _, err = await callout("run", str(flow_file), *args)
    assert rc == code
    assert words in err


async def test_run_refuses_an_invalid_flow_naming_the_node(tmp_path: Path) -> None:
    """An invalid flow exits 2 with the node and the field."""
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "id": "x",
                "nodes": [
                    {"id": "s", "type": "onFlowStart", "on": {"__next": "p"}},
                    {"id": "p", "type": "screenPop"},
                ],
            }
        )
    )
    rc, _, err = await callout("run", str(path))
    assert rc == 2
    assert "'p'" in err
    assert "screenPop" in err


@pytest.mark.parametrize(
    ("args", "code", "allowed"),
    [
        (["http://api.example.com/", "--resolve", "api.example.com:93.184.216.34"], 0, True),
        (["http://api.example.com/", "--resolve", "api.example.com:10.0.0.1"], 1, False),
        (["http://169.254.169.254/latest/meta-data/"], 1, False),
        (["gopher://example.com/"], 1, False),
    ],
)
async def test_guard_check_json_and_exit_codes(args: list[str], code: int, allowed: bool) -> None:
    """`guard check --json` answers allowed/reason/addresses; exit 0 allowed, 1 blocked."""
    rc, out, _ = await callout("guard", "check", *args, "--json", env={"CALLOUT_EGRESS_ALLOW": ""})
    answer: dict[str, Any] = json.loads(out)
    assert rc == code
    assert answer["allowed"] is allowed
    assert set(answer) == {"allowed", "reason", "addresses"}
    assert answer["reason"]


async def test_guard_check_reports_every_address_and_the_offender() -> None:
    """Several --resolve answers are all checked; the private one is named."""
    rc, out, _ = await callout(
        "guard",
        "check",
        "https://mixed.example/",
        "--resolve",
        "mixed.example:93.184.216.34",
        "--resolve",
        "mixed.example:192.168.1.5",
        env={"CALLOUT_EGRESS_ALLOW": ""},
    )
    assert rc == 1
    assert "192.168.1.5" in out


async def test_guard_check_usage_error_exits_2() -> None:
    """A --resolve value without a colon is a usage error."""
    rc, _, err = await callout("guard", "check", "http://a.example/", "--resolve", "nocolon")
    assert rc == 2
    assert "--resolve" in err


async def test_demo_runs_the_example_flow_and_shows_routes() -> None:
    """`callout demo` (what `make run` runs) shows each caller's route."""
    rc, out, _ = await callout("demo")
    assert rc == 0
    assert "=> queue: vip" in out
    assert "=> queue: new-customer" in out


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CALLOUT_HISTORY_WRITER_NICE", "20", "less than or equal to 19"),
        ("CALLOUT_HISTORY_WRITER", "thread", "'process' or 'inline'"),
    ],
)
async def test_a_bad_setting_is_named_with_what_it_accepts(
    flow_file: Path, variable: str, value: str, says: str
) -> None:
    code, out, err = await callout("run", str(flow_file), env={variable: value})
    assert code == 2
    assert out == ""
    assert err.strip() == err.strip().splitlines()[0]  # one line, no traceback
    assert variable in err
    assert says in err
