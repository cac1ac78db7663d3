"""The ``callout`` command: thin Typer commands over the engine and the services.

Exit codes: 0 success (a run completed, a URL is allowed), 1 a negative answer (a run failed, a
URL is blocked), 2 a usage error (bad arguments, an invalid flow).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yarl
from pydantic import ValidationError

from callout.demo import run_demo
from callout.engine.engine import Engine
from callout.errors import CalloutError
from callout.guard import StaticResolver, check, parse_resolve_overrides
from callout.logs import configure_logging
from callout.report import describe_run
from callout.service.runtime import Runtime, initialise, key_file, open_runtime
from callout.settings import Settings
from callout.spec.legacy import migrate_flow

__all__ = ["app", "main"]

app = typer.Typer(
    help="Callout: runs the apiCall node of contact-center call flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
guard_app = typer.Typer(help="Ask the egress guard about a destination.", no_args_is_help=True)
app.add_typer(guard_app, name="guard")
flows_app = typer.Typer(help="Work with flow files.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")

USAGE_ERROR = 2
T = TypeVar("T")


def _fail(message: str, code: int = USAGE_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _json_option(value: str | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise _fail(
            f'{name} is not valid JSON ({exc}); pass an object like \'{{"from": "+1555"}}\''
        ) from None
    if not isinstance(parsed, dict):
        raise _fail(f"{name} must be a JSON object, got {type(parsed).__name__}")
    return parsed


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "CALLOUT_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise _fail(f"{field}: {first['msg']}") from None


@app.command()
def run(
    flow: Annotated[Path, typer.Argument(help="The flow JSON file.", exists=True, dir_okay=False)],
    event: Annotated[str | None, typer.Option(help="The trigger's event scope, as JSON.")] = None,
    vars_: Annotated[str | None, typer.Option("--vars", help="Initial vars, as JSON.")] = None,
    contact: Annotated[str | None, typer.Option(help="The contact scope, as JSON.")] = None,
    config: Annotated[
        str | None, typer.Option(help="Flow parameters (config scope), as JSON.")
    ] = None,
    org: Annotated[
        str | None, typer.Option(help="The org whose saved integrations and connections to use.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a flow once and show the path it took (the store is initialised on first use)."""
    event_scope = _json_option(event, "--event")
    vars_scope = _json_option(vars_, "--vars")
    contact_scope = _json_option(contact, "--contact")
    config_scope = _json_option(config, "--config")
    settings = _settings()
    try:
        settings.engine_config()
    except ValueError as exc:
        raise _fail(str(exc)) from None

    async def go() -> int:
        async with runtime(settings, auto_init=True) as rt:
            try:
                compiled = rt.engine.load_flow(flow.read_bytes())
            except CalloutError as exc:
                where = f" (at {exc.field})" if exc.field else ""
                raise _fail(f"{flow}: {exc.message}{where}") from None
            result = await rt.run_and_record(
                compiled,
                event=event_scope,
                vars=vars_scope,
                contact=contact_scope,
                config=config_scope,
                org_id=org,
            )
        if as_json:
            typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        else:
            typer.echo(describe_run(result))
        return 0 if result.status == "completed" else 1

    raise typer.Exit(_run_async(go()))


@guard_app.command("check")
def guard_check(
    url: Annotated[str, typer.Argument(help="The URL to judge.")],
    resolve: Annotated[
        list[str] | None,
        typer.Option(help="HOST:IP to use instead of DNS (repeatable, as in curl)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Say whether the egress guard would allow URL, and why. Exit 0 allowed, 1 blocked."""
    try:
        overrides = parse_resolve_overrides(resolve or [])
    except ValueError as exc:
        raise _fail(f"--resolve: {exc}") from None
    try:
        policy = _settings().egress_policy()
    except ValueError as exc:
        raise _fail(f"CALLOUT_EGRESS_ALLOW: {exc}") from None
    host = _host_of(url)
    resolver = StaticResolver(overrides) if host is not None and host in overrides else None
    decision = _run_async(check(url, policy, resolver=resolver))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "allowed": decision.allowed,
                    "reason": decision.reason,
                    "addresses": list(decision.addresses),
                }
            )
        )
    else:
        verdict = "allowed" if decision.allowed else "blocked"
        typer.echo(f"{verdict}: {decision.reason}")
    raise typer.Exit(0 if decision.allowed else 1)


def _host_of(url: str) -> str | None:
    try:
        host = yarl.URL(url).host
    except ValueError:
        return None
    return host.lower() if host else None


@flows_app.command("migrate")
def flows_migrate(
    flow: Annotated[Path, typer.Argument(help="The flow JSON file.", exists=True, dir_okay=False)],
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write here instead of rewriting FLOW.")
    ] = None,
) -> None:
    """Rewrite legacy httpCall and integration nodes as apiCall nodes with identical behaviour."""
    try:
        document = json.loads(flow.read_text())
        Engine().load_flow(document)
    except ValueError as exc:
        raise _fail(f"{flow}: not valid JSON ({exc})") from None
    except CalloutError as exc:
        raise _fail(f"{flow}: {exc.message}") from None
    migrated, changes = migrate_flow(document)
    Engine().load_flow(migrated)  # the result must load, or nothing is written
    target = out or flow
    if changes or out is not None:
        write_atomically(target, json.dumps(migrated, indent=2, ensure_ascii=False) + "\n")
    for change in changes:
        typer.echo(f"migrated {change}", err=True)
    typer.echo(
        f"{len(changes)} node(s) migrated; wrote {target}"
        if changes or out is not None
        else f"{flow}: no legacy nodes; nothing changed",
        err=True,
    )


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a flow."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@app.command()
def demo() -> None:
    """Run the bundled example flow against a demo CRM on 127.0.0.1 and print what happened."""
    raise typer.Exit(_run_async(run_demo(typer.echo)))


@asynccontextmanager
async def runtime(settings: Settings, *, auto_init: bool = False) -> AsyncIterator[Runtime]:
    """Open the store and engine for one command; ``auto_init`` creates them on first use."""
    if auto_init and not settings.master_keys and not key_file(settings).exists():
        report = await initialise(settings)
        typer.echo(f"initialised {report.data_dir} (database and master key)", err=True)
    if "history_writer" not in settings.model_fields_set:
        # One command, at most one run: a writer process would cost more than the run.
        settings = settings.model_copy(update={"history_writer": "inline"})
    try:
        rt = await open_runtime(settings)
    except CalloutError as exc:
        raise _fail(exc.message) from None
    try:
        yield rt
    finally:
        await rt.aclose()


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (about 10% more throughput), else on asyncio."""
    try:
        import uvloop  # noqa: PLC0415  optional dependency
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    """Console entry point: scrubbed JSON logs on stderr, then the command."""
    try:
        level = Settings().log_level
    except ValidationError:
        level = "INFO"  # the command itself reports the bad setting
    configure_logging(level=level)
    app(prog_name="callout")
