"""The store commands as a real subprocess: init, spec, conn, run --org, keys, audit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callout.crypto import Sealed, SecretBinding, load_key_ring
from callout.service.connections import create_connection
from callout.service.runtime import key_file, open_runtime
from callout.service.specs import publish_spec
from callout.settings import Settings
from callout.testing import serve_app
from tests.cli_helpers import run_callout
from tests.service.test_saved_integrations import spec
from tests.store.helpers import encoded_forms

SECRET = "sk-cli-Zp3v8Qa1"


async def callout(data_dir: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = {
        "CALLOUT_DATA_DIR": str(data_dir),
        "CALLOUT_EGRESS_ALLOW": "127.0.0.1/32",
        "CALLOUT_MASTER_KEYS": "",
    }
    return await run_callout(*args, env=env, stdin=stdin)


@pytest.fixture
def spec_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    v1, v2, broken = tmp_path / "v1.yaml", tmp_path / "v2.yaml", tmp_path / "broken.yaml"
    v1.write_text(spec("/v1/contacts"))
    v2.write_text(spec("/v2/contacts"))
    broken.write_text(spec().replace("{{secret.apiKey}}", "{{secret.apiKye}}"))
    return v1, v2, broken


async def test_init_creates_a_private_key_file_and_is_idempotent(tmp_path: Path) -> None:
    """`callout init` makes a 0600 key file and the database; a second run keeps the key."""
    data = tmp_path / "data"
    rc, out, _ = await callout(data, "init")
    path = data / "master-keys.json"
    mode = stat.S_IMODE(path.stat().st_mode)
    before = path.read_bytes()
    rc2, out2, _ = await callout(data, "init")
    assert (rc, rc2) == (0, 0)
    assert "created" in out
    assert "kept" in out2
    assert mode == 0o600
    assert path.read_bytes() == before
    assert (data / "callout.db").exists()


async def test_the_service_refuses_to_run_without_a_master_key(tmp_path: Path) -> None:
    """With a database but no key, commands that need secrets refuse and say how to fix it."""
    data = tmp_path / "data"
    await callout(data, "init")
    (data / "master-keys.json").unlink()
    rc, _, err = await callout(data, "conn", "list", "--org", "o1")
    assert rc == 2
    assert "callout init" in err


async def test_publish_connect_and_run_a_pinned_flow(
    tmp_path: Path, spec_files: tuple[Path, Path, Path]
) -> None:
    """Publish v1, connect with secrets from stdin, publish v2: the flow pinned to 1 calls /v1;
    a broken spec is refused with its path; no secret is printed or stored in the clear."""
    v1, v2, broken = spec_files
    data = tmp_path / "data"
    seen: list[str] = []

    async def contact(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"name": "Ada", "echo": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/v1/contacts", contact)
    app.router.add_get("/v2/contacts", contact)
    async with serve_app(app) as up:
        await callout(data, "init")
        assert (await callout(data, "spec", "publish", str(v1)))[1].strip() == (
            "published acme-crm version 1"
        )
        rc, _, err = await callout(data, "spec", "publish", str(broken))
        assert rc == 2
        assert "connection.auth.token" in err
        rc, out, _ = await callout(
            data,
            "conn",
            "create",
            "--org",
            "org1",
            "--integration",
            "acme-crm",
            "--name",
            "main",
            "--config",
            json.dumps({"baseUrl": up.origin}),
            "--secrets-stdin",
            "--json",
            stdin=json.dumps({"apiKey": SECRET}).encode(),
        )
        assert rc == 0
        connection = json.loads(out)
        assert await callout(data, "spec", "publish", str(v2)) == (
            0,
            "published acme-crm version 2\n",
            "",
        )
        flow = tmp_path / "flow.json"
        flow.write_text(
            json.dumps(
                {
                    "id": "f",
                    "nodes": [
                        {"id": "s", "type": "onFlowStart", "on": {"__next": "lookup"}},
                        {
                            "id": "lookup",
                            "type": "apiCall",
                            "config": {
                                "mode": "integration",
                                "integrationSlug": "acme-crm",
                                "integrationVersion": 1,
                                "operationKey": "lookupContact",
                                "connectionId": connection["id"],
                                "inputs": {"phone": "{{event.from}}"},
                            },
                        },
                    ],
                }
            )
        )
        rc, out, _ = await callout(
            data, "run", str(flow), "--org", "org1", "--event", '{"from": "+1555"}', "--json"
        )
        _, listed, _ = await callout(data, "conn", "list", "--org", "org1", "--json")
        _, specs, _ = await callout(data, "spec", "list", "--json")
    result = json.loads(out)
    assert rc == 0
    assert result["vars"]["contactName"] == "Ada"
    assert seen == ["/v1/contacts"]
    assert [s["version"] for s in json.loads(specs)] == [1, 2]
    assert set(json.loads(listed)[0]["secrets"]) == {"apiKey"}
    stored = b"".join(p.read_bytes() for p in data.glob("callout.db*"))
    for form in encoded_forms(SECRET):
        assert form.decode() not in out + listed
        assert form not in stored


async def test_rotation_killed_midway_leaves_every_secret_readable(tmp_path: Path) -> None:
    """SIGKILL `keys rotate-master` after its first resealed row: every secret still opens
    with the key file, and running it again finishes."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, egress_allow="")
    await callout(data, "init")
    rt = await open_runtime(settings)
    try:
        await publish_spec(rt, spec(), owner_org=None, actor="test")
        made = [
            await create_connection(
                rt,
                org_id="org1",
                integration="acme-crm",
                name=f"c{i}",
                config={"baseUrl": "http://crm.example"},
                secrets={"apiKey": f"key-{i:04d}-xyz"},
                actor="test",
            )
            for i in range(150)
        ]
    finally:
        await rt.aclose()
    env = {**os.environ, "CALLOUT_DATA_DIR": str(data)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callout",
        "keys",
        "rotate-master",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    first = await proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert first.startswith(b"resealed 1/")
    ring = load_key_ring(None, key_file(settings))
    assert len(ring.key_ids()) == 2
    with sqlite3.connect(data / "callout.db") as conn:
        rows = conn.execute(
            "SELECT c.org_id, s.connection_id, s.field, s.sealed, s.key_id "
            "FROM connection_secrets s JOIN connections c ON c.id = s.connection_id"
        ).fetchall()
    keys_used = {row[4] for row in rows}
    opened = {
        ring.open(Sealed.from_text(row[3]), SecretBinding(row[0], row[1], row[2])) for row in rows
    }
    assert len(rows) == len(made)
    assert len(keys_used) == 2  # a mix: the rotation was really cut off midway
    assert opened == {f"key-{i:04d}-xyz" for i in range(150)}
    rc, out, _ = await callout(data, "keys", "rotate-master")
    assert rc == 0
    assert "rotated" in out


async def test_audit_verify_detects_an_edited_entry(tmp_path: Path, spec_files: Any) -> None:
    """`audit verify` passes on an untouched log and fails (exit 1) after a row is edited."""
    data = tmp_path / "data"
    await callout(data, "init")
    await callout(data, "spec", "publish", str(spec_files[0]))
    await callout(data, "spec", "publish", str(spec_files[1]))
    ok = await callout(data, "audit", "verify", "--json")
    with sqlite3.connect(data / "callout.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    rc, out, _ = await callout(data, "audit", "verify", "--json")
    assert ok[0] == 0
    assert json.loads(ok[1])["ok"] is True
    assert rc == 1
    assert json.loads(out)["firstBadSeq"] == 1


async def test_audit_verify_detects_the_newest_entry_deleted(
    tmp_path: Path, spec_files: Any
) -> None:
    """Deleting the newest row leaves a shorter chain that hashes fine; the signed head, which
    the database alone cannot re-sign, still names it, so `audit verify` fails."""
    data = tmp_path / "data"
    await callout(data, "init")
    await callout(data, "spec", "publish", str(spec_files[0]))
    await callout(data, "spec", "publish", str(spec_files[1]))
    with sqlite3.connect(data / "callout.db") as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
    rc, out, _ = await callout(data, "audit", "verify")
    assert rc == 1
    assert out.startswith("TAMPERED: ")
    assert "the newest entries were deleted" in out
