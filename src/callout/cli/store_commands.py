"""Commands over the store: ``init``, ``spec``, ``conn``, ``keys``, ``audit``.

Secrets are read from an interactive prompt, or as a JSON object on stdin with
``--secrets-stdin``; never from argv, where they would land in shell history and ``ps``.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from callout.cli.core import _fail, _json_option, _run_async, _settings, app, runtime
from callout.errors import CalloutError
from callout.service.connections import create_connection, test_connection
from callout.service.runtime import Runtime, initialise
from callout.service.specs import diff_versions, publish_spec, set_spec_status
from callout.spec.integration import SpecError
from callout.store.rotation import rotate_master_key

__all__ = ["actor"]

spec_app = typer.Typer(help="Publish and inspect integration specs.", no_args_is_help=True)
conn_app = typer.Typer(help="Manage an org's connections.", no_args_is_help=True)
keys_app = typer.Typer(help="Master keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(conn_app, name="conn")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

OrgOption = Annotated[str | None, typer.Option(help="The org (omit for the platform catalog).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def actor() -> str:
    """Who the audit log says made a change from the command line."""
    return f"cli:{getpass.getuser()}"


def _with_runtime(action: Callable[[Runtime], Awaitable[int]]) -> None:
    """Open the store, run ``action``, and turn Callout errors into a clear message, exit 2."""

    async def go() -> int:
        async with runtime(_settings()) as rt:
            try:
                return await action(rt)
            except SpecError as exc:
                for problem in exc.problems:
                    typer.echo(f"error: {problem.path or '(root)'}: {problem.message}", err=True)
                return 2
            except CalloutError as exc:
                where = f" (at {exc.field})" if exc.field else ""
                typer.echo(f"error: {exc.message}{where}", err=True)
                return 2

    raise typer.Exit(_run_async(go()))


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


@app.command("init")
def init() -> None:
    """Create the data directory, a master key file (mode 0600) and the database."""
    report = _run_async(initialise(_settings()))
    key = f"{report.key_file} ({'created' if report.created_key else 'kept'})"
    typer.echo(f"data directory: {report.data_dir}")
    typer.echo(f"master key: {key if report.key_file else 'from CALLOUT_MASTER_KEYS'}")
    typer.echo(f"database: {report.database} (migrated)")


@spec_app.command("publish")
def spec_publish(
    file: Annotated[Path, typer.Argument(help="Spec file (YAML or JSON).", exists=True)],
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a spec completely and publish it as the slug's next version."""

    async def action(rt: Runtime) -> int:
        published = await publish_spec(
            rt, file.read_bytes(), owner_org=org, actor=actor(), source=str(file)
        )
        if as_json:
            _echo_json(
                {
                    "slug": published.slug,
                    "version": published.version,
                    "created": published.created,
                    "contentHash": published.content_hash,
                }
            )
        elif published.created:
            typer.echo(f"published {published.slug} version {published.version}")
        else:
            typer.echo(f"unchanged: identical to {published.slug} version {published.version}")
        return 0

    _with_runtime(action)


@spec_app.command("list")
def spec_list(org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """Every spec version visible to the org (the catalog's and its own)."""

    async def action(rt: Runtime) -> int:
        rows = [
            {
                "slug": p.slug,
                "version": p.version,
                "status": p.status,
                "name": p.name,
                "owner": p.owner_org or "catalog",
                "createdAt": p.created_at.isoformat(),
            }
            for p in await rt.specs.list(org)
        ]
        if as_json:
            _echo_json(rows)
        for row in [] if as_json else rows:
            typer.echo(f"{row['slug']:<24} v{row['version']:<4} {row['status']:<11} {row['owner']}")
        return 0

    _with_runtime(action)


@spec_app.command("diff")
def spec_diff(
    slug: str, before: int, after: int, org: OrgOption = None, as_json: JsonFlag = False
) -> None:
    """What changed between two versions of a spec."""

    async def action(rt: Runtime) -> int:
        changes = await diff_versions(rt, org, slug, before, after)
        if as_json:
            _echo_json(changes)
        for change in [] if as_json else changes:
            typer.echo(f"{change['change']:<8} {change['path']}")
        return 0

    _with_runtime(action)


def _status_command(status: str) -> Callable[..., None]:
    def command(slug: str, version: int, org: OrgOption = None) -> None:
        async def action(rt: Runtime) -> int:
            published = await set_spec_status(rt, org, slug, version, status, actor=actor())
            typer.echo(f"{published.slug} version {published.version} is {published.status}")
            return 0

        _with_runtime(action)

    command.__doc__ = (
        "Deprecate a version: it still runs, and runs warn."
        if status == "deprecated"
        else "Retire a version: runs pinned to it fail as invalid."
    )
    return command


spec_app.command("deprecate")(_status_command("deprecated"))
spec_app.command("retire")(_status_command("retired"))


def _read_secrets(names: list[str], from_stdin: bool) -> dict[str, str]:
    if from_stdin:
        try:
            secrets = json.loads(sys.stdin.read() or "{}")
        except ValueError:
            raise _fail("--secrets-stdin: stdin is not a JSON object of secret names") from None
        if not isinstance(secrets, dict):
            raise _fail("--secrets-stdin: stdin must be a JSON object of secret names")
        return {str(k): v for k, v in secrets.items()}
    return {name: typer.prompt(f"secret {name}", hide_input=True) for name in names}


@conn_app.command("create")
def conn_create(
    org: Annotated[str, typer.Option(help="The org the connection belongs to.")],
    integration: Annotated[str, typer.Option(help="The integration slug.")],
    name: Annotated[str, typer.Option(help="A name unique in the org.")],
    config: Annotated[str, typer.Option(help="Public config, as JSON.")] = "{}",
    secrets_stdin: Annotated[
        bool, typer.Option("--secrets-stdin", help="Read secrets as a JSON object from stdin.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a connection; secrets are prompted for (or read from stdin), never argv."""
    public = _json_option(config, "--config")

    async def action(rt: Runtime) -> int:
        published = await rt.specs.get(org, integration)
        names = sorted(rt.source.compiled(published).secret_names) if published else []
        secrets = _read_secrets(names, secrets_stdin)
        record = await create_connection(
            rt,
            org_id=org,
            integration=integration,
            name=name,
            config=public,
            secrets=secrets,
            actor=actor(),
        )
        if as_json:
            _echo_json(_connection_view(record))
        else:
            typer.echo(f"created connection {record.id} ({record.name}, {record.integration_slug})")
        return 0

    _with_runtime(action)


def _connection_view(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "orgId": record.org_id,
        "integration": record.integration_slug,
        "name": record.name,
        "config": record.config,
        "revision": record.revision,
        "secrets": record.secrets,
        "updatedAt": record.updated_at.isoformat(),
    }


@conn_app.command("list")
def conn_list(
    org: Annotated[str, typer.Option(help="The org.")], as_json: JsonFlag = False
) -> None:
    """The org's connections; secrets show only whether each is set and when it changed."""

    async def action(rt: Runtime) -> int:
        views = [_connection_view(r) for r in await rt.connections.list(org)]
        if as_json:
            _echo_json(views)
        for view in [] if as_json else views:
            typer.echo(
                f"{view['id']}  {view['integration']:<20} {view['name']}  "
                f"secrets: {', '.join(sorted(view['secrets'])) or 'none'}"
            )
        return 0

    _with_runtime(action)


@conn_app.command("test")
def conn_test(
    connection_id: str,
    org: Annotated[str, typer.Option(help="The org.")],
    as_json: JsonFlag = False,
) -> None:
    """Run the integration's test operation with this connection."""

    async def action(rt: Runtime) -> int:
        result = await test_connection(rt, org, connection_id)
        detail = result.event.as_dict()
        if as_json:
            _echo_json(detail)
        else:
            error = result.vars.get("integrationError")
            verdict = "ok" if result.vars.get("integrationOk") else f"failed: {error}"
            typer.echo(f"test {verdict} (status {result.vars.get('integrationStatus')})")
        return 0 if result.vars.get("integrationOk") else 1

    _with_runtime(action)


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """Re-encrypt every secret under a new master key, online; a crash leaves all readable."""

    async def action(rt: Runtime) -> int:
        path = rt.key_file
        if path is None:
            raise _fail(
                "keys come from CALLOUT_MASTER_KEYS: rotate by adding a new key in front of "
                "the variable's value on every replica, then run `callout keys rotate-master` "
                "with a key file, or reseal with the new key"
            )

        def progress(done: int, total: int) -> None:
            typer.echo(f"resealed {done}/{total}")
            sys.stdout.flush()

        ring = await rotate_master_key(rt.db, path, rt.ring, on_progress=progress)
        typer.echo(f"rotated: primary key is now {ring.primary.key_id}")
        return 0

    _with_runtime(action)


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check the audit log's hash chain and signed head: an edited, deleted or added entry and a
    cut-off tail are found."""

    async def action(rt: Runtime) -> int:
        result = await rt.audit.verify()
        if as_json:
            _echo_json(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "firstBadSeq": result.first_bad_seq,
                    "reason": result.reason,
                }
            )
        else:
            typer.echo(("ok: " if result.ok else "TAMPERED: ") + result.reason)
        return 0 if result.ok else 1

    _with_runtime(action)
