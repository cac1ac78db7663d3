"""Run history written by a separate process: the serving process only hands each run over.

Scrubbing, encoding and storing a run's history costs about as much CPU as the run's call
(bench/RESULTS.md), so a recorder in the serving process takes that CPU from the next calls.
``ProcessHistoryRecorder`` keeps the ``HistoryRecorder`` contract (``record``, ``flush``,
``close``; nothing lost while the process lives; a full queue makes the run wait, counted) but
only turns each finished run into plain data (``engine.wire``, written by ``marshal`` in C) and
sends it to a writer process (``python -m callout.service.history_writer``) that scrubs,
encodes and stores it with the same code as the in-process recorder. The runs that end in one
turn of the event loop go in one frame at its end (up to ``batch_size`` runs a frame): none
waits here for a batch or a timer. The writer stores every frame that came while it wrote the
last batch in one transaction, so its batches grow with the load, and a ``flush()`` waits for
about one batch. It acknowledges each frame once it is committed; frames not yet acknowledged
stay here and are sent again to a new writer if the writer dies (writes are idempotent, so a
frame committed twice is stored once). The writer runs at a lower CPU priority (``niceness``,
``CALLOUT_HISTORY_WRITER_NICE``): where it shares a core with the serving process, or with
anything else that answers callers, calls come first and history is written with the CPU they
leave, its backlog still bounded by ``queue_size``.

Threat: disclosure of the secrets in a run. What is handed over is the run *before* scrubbing,
credentials included. It travels only through an anonymous pipe to a child of this process that
runs this package; it is never written to a file, an argument or the environment (the database
URL, which may hold a password, goes through the pipe too). The writer scrubs a run before
anything of it is stored or logged, and logs only error class names and counts.

Protocol: frames ``FRAME`` (sequence number, payload length) + payload, on the writer's stdin;
frame 0 is the configuration, then each frame is a ``marshal``'d list of ``run_bytes``.
Acknowledgements ``ACK`` (the sequence number of the frame just committed, in order) on its
stdout.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

import callout
from callout.engine.runner import RunResult
from callout.engine.wire import plain, run_wire, unavailable_wire, without_values
from callout.service.history import RETRY_BASE_S, RETRY_CAP_S, check_limits, history_metrics
from callout.store.errors import StoreError

__all__ = [
    "ACK",
    "FRAME",
    "MARSHAL_VERSION",
    "MAX_NICENESS",
    "ProcessHistoryRecorder",
    "run_bytes",
    "writer_command",
]

FRAME = struct.Struct("<QI")  # sequence number, payload length
ACK = struct.Struct("<Q")  # sequence number of the frame committed
MARSHAL_VERSION = 4
MAX_NICENESS = 19  # the lowest CPU priority a process can give itself

_log = logging.getLogger("callout.history")


def writer_command(niceness: int = 0) -> tuple[list[str], dict[str, str]]:
    """The writer's command line and environment: this interpreter, this copy of the package
    (the compiled build or the sources, whichever this process imported), and how much lower
    than this process's the writer sets its CPU priority (``--nice``, when not 0)."""
    root = str(Path(callout.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "callout.service.history_writer"]
    return ([*command, "--nice", str(niceness)] if niceness else command), env


class ProcessHistoryRecorder:
    """Hands finished runs to a history writer process, in frames; the ``HistoryRecorder`` API."""

    def __init__(
        self,
        database_url: str,
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        niceness: int = 0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """``niceness``: how much lower than this process's the writer's CPU priority is (0 to
        19, as ``nice``), so that where the two share a core, calls come first."""
        check_limits(queue_size, batch_size)
        if not 0 <= niceness <= MAX_NICENESS:
            raise ValueError(f"niceness must be between 0 and {MAX_NICENESS}, not {niceness}")
        self._niceness = niceness
        self._config = marshal.dumps({"database_url": database_url}, MARSHAL_VERSION)
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._metrics = history_metrics(registry)
        self._pending: list[bytes] = []  # runs not yet in a frame
        self._unacked: dict[int, tuple[bytes, int]] = {}  # seq -> (payload, runs), in order
        self._sent = 0  # the last frame's sequence number
        self._acked = 0  # every frame up to this one is committed
        self._in_flight = 0  # runs recorded and not yet committed
        self._waiters: list[asyncio.Future[None]] = []
        self._send_soon = False  # a send is scheduled for the end of this turn of the loop
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = self._closing = self._stopping = False
        self._restarts = 0

    @property
    def writer_pid(self) -> int | None:
        """The process id of the current writer (for operators and tests), if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        """Start the writer process (once)."""
        if self._started:
            return
        self._started = True
        self._metrics.depth.set_function(lambda: self._in_flight)
        await self._spawn()

    async def record(self, result: RunResult, org_id: str | None) -> None:
        """Hand a finished run over; waits only when ``queue_size`` runs are still unwritten."""
        if not self.record_nowait(result, org_id):
            self._metrics.queue_full.inc()
            await self._wait_until(lambda: self._in_flight < self._queue_size)
            self._require_running()
            self._hand_over(result, org_id)

    def record_nowait(self, result: RunResult, org_id: str | None) -> bool:
        """Hand a finished run over if fewer than ``queue_size`` runs are unwritten; False
        (nothing handed over) otherwise: then ``await record()``, which waits. A runtime calls
        this first: most runs find room, and a coroutine for each would cost more than the
        rest of this."""
        self._require_running()
        if self._in_flight >= self._queue_size:
            return False
        self._hand_over(result, org_id)
        return True

    def _hand_over(self, result: RunResult, org_id: str | None) -> None:
        self._pending.append(run_bytes(result, org_id))
        self._in_flight += 1
        if len(self._pending) >= self._batch_size:
            self._send()
        elif not self._send_soon:
            # One frame for the runs that end in this turn of the loop (one write, not one each).
            self._send_soon = True
            asyncio.get_running_loop().call_soon(self._send)

    async def flush(self) -> None:
        """Return once every run recorded before this call is written."""
        self._require_running()
        self._send()
        target = self._sent
        await self._wait_until(lambda: self._acked >= target)

    async def close(self) -> None:
        """Write everything recorded, then stop the writer; later ``record()`` calls raise.

        It waits as long as the writes take; to bound the wait, wrap it in ``asyncio.timeout``
        (the runs still unwritten when it is cancelled are lost, and their number is logged).
        """
        if not self._started or self._closing:
            return
        self._closing = True
        try:
            self._send()
            target = self._sent
            await self._wait_until(lambda: self._acked >= target)
        finally:
            if self._in_flight:
                _log.error("history close interrupted", extra={"unwrittenRuns": self._in_flight})
            await self._stop_writer(orderly=not self._in_flight)
            self._metrics.depth.set_function(lambda: 0)

    def _require_running(self) -> None:
        if not self._started or self._closing:
            raise StoreError(
                "the history recorder is not running: call start() first, and record nothing "
                "after close()",
                code="recorder_not_running",
            )

    def _send(self) -> None:
        """Put the pending runs in a frame and send it (kept until acknowledged)."""
        self._send_soon = False
        if not self._pending:
            return
        runs, self._pending = self._pending, []
        payload = marshal.dumps(runs, MARSHAL_VERSION)
        self._sent += 1
        self._unacked[self._sent] = (payload, len(runs))
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            proc.stdin.write(FRAME.pack(self._sent, len(payload)) + payload)
        # else the writer is being restarted: _spawn sends every unacknowledged frame

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _spawn(self) -> None:
        command, env = writer_command(self._niceness)
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
        )
        assert proc.stdin is not None  # noqa: S101  -- PIPE asked for
        frames = [FRAME.pack(0, len(self._config)) + self._config]
        frames += [FRAME.pack(seq, len(p)) + p for seq, (p, _) in self._unacked.items()]
        proc.stdin.write(b"".join(frames))
        self._proc = proc
        self._reader = asyncio.create_task(self._read_acks(proc), name="callout-history-acks")

    async def _read_acks(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None  # noqa: S101  -- PIPE asked for
        try:
            while True:
                (seq,) = ACK.unpack(await proc.stdout.readexactly(ACK.size))
                self._acknowledge(seq)
        except asyncio.IncompleteReadError:
            pass  # the writer exited
        code = await proc.wait()
        if self._stopping:
            return
        # It died (killed, out of memory, a bug): nothing acknowledged is lost, the rest is sent
        # again to a new writer, after a pause that grows while restarts keep failing.
        self._restarts += 1
        self._metrics.write_errors.inc()
        delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(self._restarts - 1, 20))
        _log.error(
            "history writer exited; starting another",
            extra={"exitCode": code, "unwrittenRuns": self._in_flight, "retryInS": delay},
        )
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._spawn()
            except OSError as exc:  # cannot start a process now (limits): try again later
                delay = min(RETRY_CAP_S, delay * 2)
                _log.error(
                    "history writer could not start",
                    extra={"errorType": type(exc).__name__, "retryInS": delay},
                )
            else:
                return

    def _acknowledge(self, seq: int) -> None:
        payload_runs = self._unacked.pop(seq, None)
        if payload_runs is not None:
            runs = payload_runs[1]
            self._in_flight -= runs
            self._metrics.written.inc(runs)
        self._acked = max(self._acked, seq)
        self._restarts = 0
        self._wake()

    async def _stop_writer(self, *, orderly: bool) -> None:
        self._stopping = True
        proc, reader = self._proc, self._reader
        if reader is not None:
            reader.cancel()
        if proc is None or proc.returncode is not None:
            return
        if orderly and proc.stdin is not None:
            proc.stdin.close()  # end of input: the writer has nothing left, and exits
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
                    return
            except TimeoutError:
                pass
        proc.kill()
        await proc.wait()


def run_bytes(result: RunResult, org_id: str | None) -> bytes:
    """The run as ``marshal`` bytes of its wire (``run_wire``), made at once so the run's
    objects are freed with it (kept until the frame went, they cost the collector more than
    what one ``marshal`` call for the frame saves). A value ``marshal`` cannot write becomes
    what history would store for it (``plain``); a run that cannot be written even so, or
    whose events cannot be read (a host's own trace that raises), goes without its vars and
    events, as the in-process recorder keeps a run it cannot encode."""
    try:
        wire = run_wire(result, org_id)
    except Exception as exc:  # noqa: BLE001  -- keep the run, without what could not be read
        _log.error(
            "history hand-over failed",
            extra={"errorType": type(exc).__name__, "runId": result.run_id},
        )
        return marshal.dumps(unavailable_wire(result, org_id), MARSHAL_VERSION)
    try:
        return marshal.dumps(wire, MARSHAL_VERSION)
    except ValueError:
        pass
    try:  # the copy only now: it costs three times what the marshal call does
        return marshal.dumps(plain(wire), MARSHAL_VERSION)
    except (ValueError, RecursionError):
        return marshal.dumps(without_values(wire), MARSHAL_VERSION)
