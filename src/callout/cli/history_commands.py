"""Commands over run history: ``runs list``, ``runs show`` and ``history purge``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from callout.cli.core import _fail, _run_async, _settings, app, runtime
from callout.service.history import retention_cutoff
from callout.service.runtime import Runtime
from callout.store.history import RunRecord

__all__: list[str] = []

runs_app = typer.Typer(help="Run history: the path each run took, and why.", no_args_is_help=True)
history_app = typer.Typer(help="Run history retention.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(history_app, name="history")

OrgOption = Annotated[str | None, typer.Option(help="The org whose runs to read.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _serve(action: Any) -> None:
    async def go() -> int:
        async with runtime(_settings()) as rt:
            code: int = await action(rt)
            return code

    raise typer.Exit(_run_async(go()))


def record_view(record: RunRecord) -> dict[str, Any]:
    """A stored run as JSON (already scrubbed when it was recorded)."""
    return {
        "runId": record.run_id,
        "orgId": record.org_id,
        "flowId": record.flow_id,
        "status": record.status,
        "startedAt": record.started_at.isoformat(),
        "durationMs": record.duration_ms,
        "path": record.path,
        "endedBy": record.ended_by,
        "error": record.error,
        "vars": record.vars,
        "events": record.events,
    }


@runs_app.command("list")
def runs_list(
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow id.")] = None,
    org: OrgOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The newest runs, one line each."""

    async def action(rt: Runtime) -> int:
        runs = await rt.history.list(org, flow_id=flow, limit=limit)
        rows = [
            {
                "runId": r.run_id,
                "flowId": r.flow_id,
                "status": r.status,
                "startedAt": r.started_at.isoformat(),
                "durationMs": r.duration_ms,
                "endedBy": r.ended_by,
                "events": r.event_count,
            }
            for r in runs
        ]
        if as_json:
            typer.echo(json.dumps(rows))
        for row in [] if as_json else rows:
            typer.echo(
                f"{row['runId']}  {row['startedAt']}  {row['flowId']:<20} "
                f"{row['status']:<9} {row['endedBy']}"
            )
        return 0

    _serve(action)


@runs_app.command("show")
def runs_show(run_id: str, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """One run: its path, and per node the request, response, outcome and route."""

    async def action(rt: Runtime) -> int:
        record = await rt.history.get(org, run_id)
        if record is None:
            raise _fail(f"no run {run_id!r} in this org's history", code=1)
        view = record_view(record)
        if as_json:
            typer.echo(json.dumps(view, ensure_ascii=False, default=str))
            return 0
        typer.echo(
            f"run {record.run_id} of flow {record.flow_id!r}: {record.status} "
            f"({record.ended_by}), {record.duration_ms} ms"
        )
        typer.echo(f"  path: {' -> '.join(record.path)}")
        for event in record.events:
            outcome = f" outcome {event['outcome']}" if "outcome" in event else ""
            typer.echo(f"  {event['nodeId']} ({event['nodeType']}){outcome} -> {event['route']}")
            request = event.get("request")
            if request:
                typer.echo(f"    {request['method']} {request['url']}")
            if event.get("error"):
                typer.echo(f"    error {event['error']['code']}: {event['error']['message']}")
        return 0

    _serve(action)


@history_app.command("purge")
def history_purge(
    days: Annotated[
        int | None, typer.Option(min=1, help="Keep this many days (default CALLOUT_HISTORY_DAYS).")
    ] = None,
) -> None:
    """Delete runs older than the retention period."""
    keep = days or _settings().history_days

    async def action(rt: Runtime) -> int:
        deleted = await rt.history.purge(retention_cutoff(keep))
        typer.echo(f"purged {deleted} run(s) older than {keep} day(s)")
        return 0

    _serve(action)
