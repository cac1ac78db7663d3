"""The history recorder: runs go on a bounded queue; one task scrubs and writes them in batches.

``record()`` costs a queue put on the call path. The writer task takes up to ``batch_size`` runs
(or what arrived within ``flush_interval`` of the first), scrubs and encodes them
(``HistoryStore.encode``) and writes them with ``HistoryStore.write_batch``. Nothing recorded
is dropped while the process lives: a failed write is retried with backoff, keeping its batch,
and when the queue is full ``record()`` waits for room (counted in
``callout_history_queue_full_total``) instead of throwing the run away. ``close()`` writes
everything queued before it stops. All methods must be called on the event loop that ran
``start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from callout.engine.engine import HistorySink
from callout.engine.runner import RunResult
from callout.store.errors import StoreError
from callout.store.history import EncodedRun, HistoryStore, RunRecord

__all__ = [
    "HistoryMetrics",
    "HistoryRecorder",
    "RunRecorder",
    "check_limits",
    "history_metrics",
    "retention_cutoff",
]

#: The first retry of a failed write waits this long; each next one twice as long, up to the cap.
RETRY_BASE_S = 0.05
RETRY_CAP_S = 5.0

_log = logging.getLogger("callout.history")  # silent unless the host configures logging


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The instant before which runs are purged when history is kept ``days`` days."""
    if days < 1:
        raise ValueError(f"history is kept at least 1 day, not {days}")
    now = now if now is not None else datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class HistoryMetrics:
    written: Counter
    queue_full: Counter
    write_errors: Counter
    depth: Gauge


# One set per registry: a second recorder (a test, a restart in-process) must not re-register.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, HistoryMetrics] = weakref.WeakKeyDictionary()


def history_metrics(registry: CollectorRegistry) -> HistoryMetrics:
    found = _METRICS.get(registry)
    if found is None:
        found = HistoryMetrics(
            Counter(
                "callout_history_runs_written",
                "Runs written to run history.",
                registry=registry,
            ),
            Counter(
                "callout_history_queue_full",
                "Times a run waited because the history queue was full.",
                registry=registry,
            ),
            Counter(
                "callout_history_write_errors",
                "Failed history batch writes (each is retried).",
                registry=registry,
            ),
            Gauge(
                "callout_history_queue_depth",
                "Runs waiting to be written to history.",
                registry=registry,
            ),
        )
        _METRICS[registry] = found
    return found


@dataclass(slots=True)
class _Entry:
    result: RunResult
    org_id: str | None


class _Flush:
    """A marker in the queue: resolved once every run queued before it is written."""

    __slots__ = ("done", "stop")

    def __init__(self, *, stop: bool = False) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stop = stop


def check_limits(queue_size: int, batch_size: int, flush_interval: float = 0.0) -> None:
    """Refuse a recorder's limits that cannot work (a writer process has no flush interval:
    it sends what ends in each turn of the loop)."""
    if queue_size < 1 or batch_size < 1 or flush_interval < 0:
        raise ValueError("queue_size and batch_size must be positive, flush_interval >= 0")


class RunRecorder(HistorySink, Protocol):
    """What a runtime records its runs' history with: ``HistoryRecorder`` (in this process) or
    ``ProcessHistoryRecorder`` (a writer process). Both take runs as the engine's
    ``HistorySink`` (``record_nowait``, ``record``), write every run recorded before a
    ``flush()`` or ``close()`` returns, and make ``record()`` wait rather than drop a run."""

    async def start(self) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class HistoryRecorder:
    """Records finished runs into a ``HistoryStore`` in the background, in batches."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        flush_interval: float = 0.2,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        check_limits(queue_size, batch_size, flush_interval)
        self._store = store
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._metrics = history_metrics(registry)
        self._queue: asyncio.Queue[_Entry | _Flush] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the writer task (once)."""
        if self._task is not None:
            return
        queue: asyncio.Queue[_Entry | _Flush] = asyncio.Queue(self._queue_size)
        self._queue = queue
        self._metrics.depth.set_function(queue.qsize)
        self._task = asyncio.create_task(self._run(), name="callout-history-writer")

    async def record(self, result: RunResult, org_id: str | None) -> None:
        """Queue a finished run for history; waits only when the queue is full."""
        if not self.record_nowait(result, org_id):
            self._metrics.queue_full.inc()
            await self._open_queue().put(_Entry(result, org_id))

    def record_nowait(self, result: RunResult, org_id: str | None) -> bool:
        """Queue a finished run if there is room; False (nothing queued) when the queue is
        full: then ``await record()``, which waits. A runtime calls this first: most runs find
        room, and a coroutine for each would cost more than the rest of this."""
        try:
            self._open_queue().put_nowait(_Entry(result, org_id))
        except asyncio.QueueFull:
            return False
        return True

    async def write(
        self, runs: Iterable[tuple[RunResult, str | None]], *, cooperative: bool = True
    ) -> None:
        """Scrub, encode and store ``runs`` (result, org id) now, as one batch, retried as the
        background writer retries; they do not go through the queue. For a caller that gathers
        its own batches (the writer process); it needs no ``start()``. ``cooperative=False``
        encodes the batch without letting the event loop run in between: for a loop that has
        nothing else to run (the writer process's), where each turn is only a cost."""
        await self._write([_Entry(result, org_id) for result, org_id in runs], cooperative)

    async def flush(self) -> None:
        """Return once every run recorded before this call is written."""
        queue = self._open_queue()
        assert self._task is not None  # noqa: S101  -- start() sets both
        await self._marker(queue, self._task, _Flush())

    async def close(self) -> None:
        """Write everything queued, then stop the writer; later ``record()`` calls raise.

        It waits as long as the writes take (a database that is down is retried). To bound the
        wait, wrap it: ``async with asyncio.timeout(10): await recorder.close()``; the runs still
        queued when it is cancelled are lost, and their number is logged.
        """
        if self._task is None or self._queue is None or self._closing:
            return
        self._closing = True
        marker = _Flush(stop=True)
        try:
            await self._marker(self._queue, self._task, marker)
        finally:
            if not marker.done.done():
                _log.error(
                    "history close interrupted", extra={"unwrittenRuns": self._queue.qsize()}
                )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._metrics.depth.set_function(lambda: 0)

    def _open_queue(self) -> asyncio.Queue[_Entry | _Flush]:
        if self._queue is None or self._closing:
            raise StoreError(
                "the history recorder is not running: call start() first, and record nothing "
                "after close()",
                code="recorder_not_running",
            )
        return self._queue

    @staticmethod
    async def _marker(
        queue: asyncio.Queue[_Entry | _Flush], writer: asyncio.Task[None], marker: _Flush
    ) -> None:
        await queue.put(marker)
        # If the writer died (a bug), say so rather than wait forever.
        await asyncio.wait({marker.done, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not marker.done.done():
            failure = None if writer.cancelled() else writer.exception()
            raise StoreError("the history writer stopped", code="recorder_stopped") from failure

    async def _run(self) -> None:
        assert self._queue is not None  # noqa: S101  -- start() sets it first
        queue, loop = self._queue, asyncio.get_running_loop()
        while True:
            batch: list[_Entry] = []
            marker: _Flush | None = None
            item = await queue.get()
            deadline = loop.time() + self._flush_interval
            while True:
                if isinstance(item, _Flush):
                    marker = item
                    break
                batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                got = await _next(queue, deadline - loop.time())
                if got is None:
                    break
                item = got
            if batch:
                await self._write(batch)
            if marker is not None:
                if not marker.done.done():
                    marker.done.set_result(None)
                if marker.stop:
                    return

    async def _write(self, batch: list[_Entry], cooperative: bool = True) -> None:
        records: list[EncodedRun | RunRecord] = []
        for count, entry in enumerate(batch, 1):
            records.append(_encode(self._store, entry))
            if cooperative and count % _ENCODED_BETWEEN_YIELDS == 0:
                # Encoding is CPU work (~100 us a run): let the call path run in between, every
                # few runs rather than after each (a loop turn costs a few us of its own).
                await asyncio.sleep(0)
        attempt = 0
        while True:
            try:
                await self._store.write_batch(records)
            except Exception as exc:  # noqa: BLE001  -- any failure is retried; never dropped
                attempt += 1
                self._metrics.write_errors.inc()
                # The class names only: a driver's message can quote the statement's parameters.
                cause = type(getattr(exc, "orig", None) or exc.__cause__ or exc).__name__
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(attempt - 1, 20))
                _log.warning(
                    "history write failed",
                    extra={
                        "errorType": type(exc).__name__,
                        "cause": cause,
                        "runs": len(records),
                        "attempt": attempt,
                        "retryInS": delay,
                    },
                )
                await asyncio.sleep(delay)
            else:
                self._metrics.written.inc(len(records))
                return


#: Runs encoded between two turns of the event loop while a batch is being written.
_ENCODED_BETWEEN_YIELDS = 4


async def _next(queue: asyncio.Queue[Any], wait: float) -> Any | None:
    """The next queued item, waiting at most ``wait`` seconds; None when none came."""
    with contextlib.suppress(asyncio.QueueEmpty):
        return queue.get_nowait()
    if wait <= 0:
        return None
    try:
        async with asyncio.timeout(wait):
            return await queue.get()
    except TimeoutError:
        return None  # a cancelled get() leaves its item queued: nothing is lost


def _encode(store: HistoryStore, entry: _Entry) -> EncodedRun | RunRecord:
    try:
        return store.encode(entry.result, entry.org_id)
    except Exception as exc:  # noqa: BLE001  -- keep the run, without what could not be scrubbed
        _log.error(
            "history materialise failed",
            extra={"errorType": type(exc).__name__, "runId": entry.result.run_id},
        )
        return RunRecord(
            run_id=entry.result.run_id,
            org_id=entry.org_id,
            flow_id=entry.result.flow_id,
            status=entry.result.status,
            started_at=datetime.fromtimestamp(entry.result.started_at, UTC),
            duration_ms=round(entry.result.duration_ms),
            path=list(entry.result.path),
            error={"code": "history_unavailable", "message": "the run's details were not kept"},
            ended_by=entry.result.ended_by,
        )
