"""Throughput of an apiCall node against raw aiohttp, measured in one run.

An aiohttp upstream runs on 127.0.0.1 in a separate process. In this process, at the same
concurrency and request count, we time (a) a raw aiohttp client loop doing the equivalent request
(POST a JSON body, parse the JSON answer) and (b) the engine running an apiCall http node with a
templated URL and JSON body whose response is parsed into vars: prepared once and run per call
(how a host platform's flow engine embeds it), and inside a flow run by Callout's runner. Then
(c) an integration node against a spec and connection stored in SQLite (cached after the first
call), prepared and run per call like the http node, (d) the same node inside a flow, (e)
that flow with run history recorded (flushed inside the timing) by the history writer process
a runtime uses by default, and (f) the same with history written in this process
(``CALLOUT_HISTORY_WRITER=inline``). The CPU a request of this process, of the writer process
and of the upstream is printed too: the writer's work is moved off the serving process, not
gone, and on this 2-core machine it shares a core with the upstream. Each variant is paired with a
raw baseline in every round: the two are set up once and driven in alternating blocks
(``--blocks``), so both see the same stretch of the shared machine's speed; medians of the
per-pair ratios are reported.

A block is 3,000 requests (``--requests`` over ``--blocks``). Each block of a variant that
records history ends with a flush inside the timing, so that the raw block after it never runs
beside a busy writer and history is charged for all of its work: the flush waits out the
writer's lag behind the calls, a fixed few milliseconds a block whatever its length. This is a
throughput measure, so that fixed cost is kept to ~1 % of a block, as when history was first
measured here (one flush after all of a variant's 5,000, then 3,000, requests). Blocks of 500
(the default from the fifth pass to the fifteenth) made it ~7 %: the per-block drain, not the
sustained cost, then set the history ratio (bench/RESULTS.md, sixteenth pass). A writer that
cannot keep up is still charged in full: its backlog grows over a block and is drained in
that block's flush.

    .venv/bin/python bench/node_throughput.py [--requests 18000] [--concurrency 64] [--rounds 5]
        [--blocks 6] [--variants http,http-flow,node,flow,history,history-inline] [--pin]

With ``--pin`` this process runs alone on CPU 0 and the upstream and the history writer share
CPU 1: the serving process has a core of its own and the writer a spare one, as in a deployment
where the upstream is remote. Without it the scheduler spreads the three over both cores, and
the writer's CPU competes with the serving process's.

The last line printed is one JSON object: {"baseline_rps", "callout_rps", "ratio", ...}
(ratios of the other variants too: "flow_ratio", "integration_ratio",
"integration_flow_ratio", "history_ratio", "inline_history_ratio"; and the writer process's
CPU a request, "history_writer_cpu_us"), for the variants measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
from aiohttp import web

from callout._body import parse_body, read_body
from callout._hop import send_hop
from callout._jsontext import dumps_compact
from callout.engine.engine import Engine, PreparedNode
from callout.engine.runner import CompiledFlow
from callout.engine.services import EngineConfig
from callout.guard import EgressPolicy, GuardedResolver, check_url
from callout.service.connections import create_connection
from callout.service.runtime import Runtime, initialise, open_runtime
from callout.service.specs import publish_spec
from callout.settings import Settings

CONTACT = {"id": "c-1001", "name": "Ada Lovelace", "tier": "gold", "tags": ["vip", "emea"]}


def _serve(port_out: Any) -> None:
    """The upstream: answers every POST /v1/contacts/{id} with a small JSON document."""

    async def contact(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(CONTACT)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/contacts/{id}", contact)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_out.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    _use_uvloop()
    asyncio.run(main())


class Upstream(NamedTuple):
    port: int
    pid: int  # its CPU is counted too: on this machine it competes for a core


@contextmanager
def upstream_process(cpu: int | None = None) -> Iterator[Upstream]:
    """Start the upstream in a separate process (on CPU ``cpu`` only, when given); yield its
    port and process id; stop it afterwards."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    assert server.pid is not None
    if cpu is not None:
        os.sched_setaffinity(server.pid, {cpu})
    try:
        yield Upstream(recv.recv(), server.pid)
    finally:
        server.terminate()
        server.join()


def _use_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415  optional: the bench runs on asyncio without it
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def _drive(
    n: int,
    concurrency: int,
    one: Callable[[int], Awaitable[None]],
    finish: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Run ``one(i)`` for i in range(n) with ``concurrency`` workers, then ``finish()`` (inside
    the timing: history must be written, not just queued); return requests/second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if finish is not None:
        await finish()
    return n / (time.perf_counter() - started)


class Load(NamedTuple):
    """What a variant drives: ``one(i)`` makes request ``i``; ``finish()``, when given, runs
    inside the timing after the requests (history must be written, not just queued);
    ``helper_pid``, the process that takes work off this one (the history writer), whose CPU
    is counted too."""

    one: Callable[[int], Awaitable[None]]
    finish: Callable[[], Awaitable[None]] | None = None
    helper_pid: int | None = None


async def _timed(load: Load, n: int, concurrency: int) -> float:
    return await _drive(n, concurrency, load.one, load.finish)


def _pin(pid: int, cpu: int) -> None:
    """Every thread of process ``pid`` (the writer's database thread too) on CPU ``cpu``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used; this process's when None."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def _raw_load(port: int) -> AsyncIterator[Load]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            url = f"http://127.0.0.1:{port}/v1/contacts/{i}?from=%2B1555{i}"
            body = {"caller": f"+1555{i}", "attempt": i}
            async with session.post(url, json=body) as resp:
                data = await resp.json()
                assert data["id"] == "c-1001"

        await one(0)  # warm the pool
        yield Load(one)


async def _raw(port: int, n: int, concurrency: int) -> float:
    async with _raw_load(port) as load:
        return await _timed(load, n, concurrency)


NODE = {
    "id": "lookup",
    "type": "apiCall",
    "config": {
        "mode": "http",
        "method": "POST",
        "url": "{{config.base}}/v1/contacts/{{vars.i}}?from={{event.from}}",
        "body": {"caller": "{{event.from}}", "attempt": "{{vars.i}}"},
        "responseVar": "crm",
        "cases": [{"path": "outcome", "op": "eq", "value": "2xx", "nodeId": "end"}],
    },
}


@asynccontextmanager
async def _callout_load(port: int, *, whole_flow: bool) -> AsyncIterator[Load]:
    """The engine running the apiCall node: prepared once and run per call (how a host's flow
    engine embeds it), or inside a flow (onFlowStart -> the node) run by Callout's runner."""
    config = EngineConfig(egress=EgressPolicy.from_entries(["127.0.0.1/32"]))
    async with Engine(config) as engine:
        flow = engine.load_flow(
            {
                "id": "bench",
                "nodes": [{"id": "start", "type": "onFlowStart", "on": {"__next": "lookup"}}, NODE],
            }
        )
        node = engine.prepare_node(NODE)
        base = {"base": f"http://127.0.0.1:{port}"}

        async def one(i: int) -> None:
            scopes: dict[str, Any] = {
                "event": {"from": f"+1555{i}"},
                "vars": {"i": i},
                "config": base,
            }
            if whole_flow:
                result: Any = await engine.run_flow(flow, **scopes)
            else:
                result = await engine.run_node(node, **scopes)
            assert result.vars["crm"]["id"] == "c-1001", result.vars.get("httpError")

        await one(0)
        yield Load(one)


async def _callout(port: int, n: int, concurrency: int, *, whole_flow: bool) -> float:
    async with _callout_load(port, whole_flow=whole_flow) as load:
        return await _timed(load, n, concurrency)


SPEC = {
    "slug": "bench-crm",
    "name": "Bench CRM",
    "connection": {
        "config": {
            "type": "object",
            "required": ["baseUrl"],
            "properties": {"baseUrl": {"type": "string"}},
        },
        "secrets": {"apiKey": {"description": "API key"}},
        "auth": {"type": "bearer", "token": "{{secret.apiKey}}"},
        "allowedOrigins": ["{{conn.baseUrl}}"],
    },
    "operations": {
        "lookup": {
            "method": "POST",
            "url": "{{conn.baseUrl}}/v1/contacts/{{input.i}}",
            "query": {"from": "{{input.from}}"},
            "body": {"caller": "{{input.from}}", "attempt": "{{input.i}}"},
            "inputSchema": {
                "type": "object",
                "required": ["from", "i"],
                "properties": {"from": {"type": "string"}, "i": {"type": "integer"}},
            },
            "defaultOutputMappings": {"crmId": "id", "crmName": "name"},
        }
    },
}


async def _store_runtime(
    port: int, data_dir: Path, writer: str = "process"
) -> tuple[Runtime, CompiledFlow, PreparedNode]:
    """A runtime on SQLite with the spec published and a connection made (cached after the
    first call, as on a live service); its history recorded by ``writer`` (process, inline)."""
    settings = Settings(data_dir=data_dir, egress_allow="127.0.0.1/32", history_writer=writer)
    await initialise(settings)
    rt = await open_runtime(settings)
    await publish_spec(rt, json.dumps(SPEC), owner_org=None, actor="bench")
    connection = await create_connection(
        rt,
        org_id="bench",
        integration="bench-crm",
        name=f"crm-{data_dir.name}",
        config={"baseUrl": f"http://127.0.0.1:{port}"},
        secrets={"apiKey": "sk-bench-123456"},
        actor="bench",
    )
    node = {
        "id": "lookup",
        "type": "apiCall",
        "config": {
            "mode": "integration",
            "integrationSlug": "bench-crm",
            "integrationVersion": 1,
            "operationKey": "lookup",
            "connectionId": connection.id,
            "inputs": {"from": "{{event.from}}", "i": "{{vars.i}}"},
            "cases": [{"path": "outcome", "op": "eq", "value": "2xx", "nodeId": "end"}],
        },
    }
    flow = rt.engine.load_flow(
        {
            "id": "bench-integration",
            "nodes": [{"id": "start", "type": "onFlowStart", "on": {"__next": "lookup"}}, node],
        }
    )
    return rt, flow, rt.engine.prepare_node(node)


@asynccontextmanager
async def _integration_load(port: int, data_dir: Path, *, run: str) -> AsyncIterator[Load]:
    """``run``: "node" (prepared, ``run_node``, as the http node), "flow" (``run_flow``),
    "history" (the flow with its run history recorded, by the writer process a runtime uses by
    default) or "history-inline" (recorded in this process, ``CALLOUT_HISTORY_WRITER=inline``).
    """
    recorded = run.startswith("history")
    writer = "process" if run == "history" else "inline"  # no idle writer beside the others
    rt, flow, node = await _store_runtime(port, data_dir, writer)
    try:

        async def one(i: int) -> None:
            scopes: dict[str, Any] = {"event": {"from": f"+1555{i}"}, "vars": {"i": i}}
            result: Any
            if recorded:
                result = await rt.run_and_record(flow, org_id="bench", **scopes)
            elif run == "flow":
                result = await rt.engine.run_flow(flow, org_id="bench", **scopes)
            else:
                result = await rt.engine.run_node(node, org_id="bench", **scopes)
            assert result.vars["crmId"] == "c-1001", result.vars.get("integrationError")

        await one(0)
        await rt.recorder.flush()  # the writer process is up and has written a run
        pid = getattr(rt.recorder, "writer_pid", None)
        yield Load(one, rt.recorder.flush if recorded else None, pid)
    finally:
        await rt.aclose()


async def _integration(port: int, n: int, concurrency: int, data_dir: Path, *, run: str) -> float:
    async with _integration_load(port, data_dir, run=run) as load:
        return await _timed(load, n, concurrency)


@asynccontextmanager
async def _floor_load(port: int) -> AsyncIterator[Load]:
    """A reference, not a variant of the engine: the integration node's call written by hand,
    doing only the work no implementation can skip (inputs checked, URL encoded and passed by
    the egress guard, bearer auth, JSON body, one deadline, the capped body read and JSON
    parse, the outputs and the case), sent as the transport sends a hop (``send_hop``). What the
    engine costs above this is what its general machinery (scopes, compiled templates, pins,
    traces, events) costs."""
    policy = EgressPolicy.from_entries(["127.0.0.1/32"])
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, resolver=GuardedResolver(policy))
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(sock_connect=3, ceil_threshold=3600),
        headers={"User-Agent": "Callout/0.1 (+apiCall)"},
    )
    base, auth = f"http://127.0.0.1:{port}", "Bearer sk-bench-123456"
    loop = asyncio.get_running_loop()
    async with session:

        async def one(i: int) -> None:
            event, vars_ = {"from": f"+1555{i}"}, {"i": i}
            deadline = loop.time() + 30.0
            inputs = {"from": event["from"], "i": vars_["i"]}
            if not isinstance(inputs["from"], str) or type(inputs["i"]) is not int:
                raise ValueError("inputs")
            url = check_url(
                f"{base}/v1/contacts/{quote(str(inputs['i']), safe='')}"
                f"?from={quote(inputs['from'], safe='')}",
                policy,
            )
            payload = dumps_compact({"caller": inputs["from"], "attempt": inputs["i"]}).encode()
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            remaining = min(8.0, deadline - loop.time())
            timeout = aiohttp.ClientTimeout(total=remaining, sock_connect=3, ceil_threshold=3600)
            resp = await send_hop(session, "POST", url, headers, payload, timeout)
            data = await read_body(resp, "POST", 1 << 20, url)
            body = parse_body(data, resp.headers.get("Content-Type", ""), 64, url)
            status = resp.status
            found = body if isinstance(body, dict) else {}
            changed = {
                "integrationStatus": status,
                "integrationOk": 200 <= status < 300,
                "integrationError": None,
                "crmId": found.get("id"),
                "crmName": found.get("name"),
            }
            result = {**vars_, **changed}
            route = "end" if 200 <= status < 300 else None
            assert result["crmId"] == "c-1001", route

        await one(0)
        yield Load(one)


async def _floor(port: int, n: int, concurrency: int) -> float:
    async with _floor_load(port) as load:
        return await _timed(load, n, concurrency)


class Variant(NamedTuple):
    """A variant by its ``--variants`` key: its name as printed, and its keys in the JSON line."""

    name: str
    rps_key: str | None
    ratio_key: str


VARIANTS = {
    "http": Variant("http node", "callout_rps", "ratio"),
    "http-flow": Variant("http flow", "flow_rps", "flow_ratio"),
    "node": Variant("integration node", "integration_rps", "integration_ratio"),
    "flow": Variant("integration flow", "integration_flow_rps", "integration_flow_ratio"),
    "history": Variant("integration + history", "history_rps", "history_ratio"),
    "history-inline": Variant("integration + inline history", None, "inline_history_ratio"),
}


async def _measure(
    upstream: Upstream,
    n: int,
    concurrency: int,
    rounds: int,
    blocks: int,
    helper_cpu: int | None = None,
    chosen: list[str] | None = None,
) -> dict[str, float]:
    """Each round pairs every variant with a raw baseline, both set up once and then driven in
    ``blocks`` alternating blocks of ``n / blocks`` requests (raw first in even blocks, the
    variant first in odd ones), so that both see the same stretch of the shared machine's
    speed, which drifts by 2x between minutes and noticeably within seconds. A pair's ratio is
    raw time / variant time over all its blocks. Reported: medians of the per-pair ratios and
    of the rates. ``chosen``: the ``VARIANTS`` keys to measure, in that order (all by default).
    """
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    port = upstream.port
    loads: dict[str, Callable[[int], AbstractAsyncContextManager[Load]]] = {
        "http": lambda r: _callout_load(port, whole_flow=False),
        "http-flow": lambda r: _callout_load(port, whole_flow=True),
        "node": lambda r: _integration_load(port, root / f"i{r}", run="node"),
        "flow": lambda r: _integration_load(port, root / f"f{r}", run="flow"),
        "history": lambda r: _integration_load(port, root / f"h{r}", run="history"),
        "history-inline": lambda r: _integration_load(port, root / f"n{r}", run="history-inline"),
    }
    variants = {VARIANTS[key].name: loads[key] for key in chosen or VARIANTS}
    rates: dict[str, list[float]] = {name: [] for name in ["raw", *variants]}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    # CPU a request: of this process (client and engine), of the history writer process, and of
    # the upstream (with --pin, the writer and the upstream share CPU 1).
    cpu: dict[str, list[float]] = {name: [] for name in ["raw", *variants]}
    writer_cpu: list[float] = []
    upstream_cpu: dict[str, list[float]] = {name: [] for name in ["raw", *variants]}
    size = max(1, n // blocks)
    try:
        for r in range(rounds):
            line = []
            for name, load in variants.items():
                seconds = {"raw": 0.0, name: 0.0}
                used = {"raw": 0.0, name: 0.0}
                served = {"raw": 0.0, name: 0.0}
                helper = 0.0
                async with _raw_load(port) as raw, load(r) as ours:
                    if helper_cpu is not None and ours.helper_pid is not None:
                        _pin(ours.helper_pid, helper_cpu)
                    for block in range(blocks):
                        order = [("raw", raw), (name, ours)]
                        for label, driven in order if block % 2 == 0 else order[::-1]:
                            before, helper_before = _cpu_s(None), _cpu_s(driven.helper_pid)
                            upstream_before = _cpu_s(upstream.pid)
                            seconds[label] += size / await _timed(driven, size, concurrency)
                            used[label] += _cpu_s(None) - before
                            served[label] += _cpu_s(upstream.pid) - upstream_before
                            if driven.helper_pid is not None:
                                helper += _cpu_s(driven.helper_pid) - helper_before
                done = size * blocks
                baseline, rate = done / seconds["raw"], done / seconds[name]
                rates["raw"].append(baseline)
                rates[name].append(rate)
                ratios[name].append(rate / baseline)
                cpu["raw"].append(used["raw"] / done * 1e6)
                cpu[name].append(used[name] / done * 1e6)
                for label in ("raw", name):
                    upstream_cpu[label].append(served[label] / done * 1e6)
                if ours.helper_pid is not None:
                    writer_cpu.append(helper / done * 1e6)
                line.append(f"{name} {rate:,.0f}/{baseline:,.0f} = {rate / baseline:.2f}")
            print(f"round {r + 1}: " + " | ".join(line))
    finally:
        tmp.cleanup()
    print(
        "CPU a request (median, us): "
        + "; ".join(f"{name} {statistics.median(v):.0f}" for name, v in cpu.items())
        + (
            f"; the history writer process {statistics.median(writer_cpu):.0f}"
            if writer_cpu
            else ""
        )
    )
    print(
        "the upstream's CPU a request (median, us): "
        + "; ".join(f"{name} {statistics.median(v):.0f}" for name, v in upstream_cpu.items())
    )

    def med(values: list[float], digits: int = 1) -> float:
        return round(statistics.median(values), digits)

    figures = {"baseline_rps": med(rates["raw"])}
    for variant in VARIANTS.values():
        if variant.name in variants:
            if variant.rps_key is not None:
                figures[variant.rps_key] = med(rates[variant.name])
            figures[variant.ratio_key] = med(ratios[variant.name], 3)
    if writer_cpu:
        figures["history_writer_cpu_us"] = med(writer_cpu)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=18_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"which to measure, in this order (each against raw): {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="this process on CPU 0 alone; the upstream and the history writer on CPU 1 (a "
        "serving process with a core of its own, the writer on a spare one)",
    )
    args = parser.parse_args()
    chosen = [key for key in args.variants.split(",") if key]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen or len(set(chosen)) < len(chosen):
        parser.error(f"--variants: each of {', '.join(VARIANTS)} at most once")
    other = 1 if args.pin else None
    if args.pin:
        os.sched_setaffinity(0, {0})
    with upstream_process(other) as upstream:
        loop_name = _use_uvloop()
        print(
            f"upstream: aiohttp on 127.0.0.1:{upstream.port} (separate process); client loop: "
            f"{loop_name}"
        )
        print(
            f"{args.requests} requests per measurement, {args.rounds} rounds, concurrency "
            f"{args.concurrency}; each variant paired with its own raw baseline, the two "
            f"alternating in {args.blocks} blocks; "
            + (
                "this process (client and engine) alone on CPU 0, the upstream and the history "
                "writer on CPU 1"
                if args.pin
                else "upstream, client, engine and history writer share the machine's 2 cores"
            )
        )
        figures = asyncio.run(
            _measure(
                upstream, args.requests, args.concurrency, args.rounds, args.blocks, other, chosen
            )
        )
    print(
        f"median: raw aiohttp {figures['baseline_rps']:,.0f} req/s; "
        + "; ".join(
            f"{VARIANTS[key].name} ratio {figures[VARIANTS[key].ratio_key]:.3f}" for key in chosen
        )
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
