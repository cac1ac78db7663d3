"""The history writer process: what only a recorder in another process can get wrong (a writer
that dies or stalls, shutdown, the copy of the package it runs, settings). The contract it shares
with the in-process recorder is tested on both in test_history_recorder.py."""

from __future__ import annotations

import asyncio
import io
import marshal
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import callout
from callout.crypto import KeyRing, MasterKey
from callout.engine.engine import Engine
from callout.engine.runner import CompiledFlow, RunResult
from callout.service.history import HistoryRecorder
from callout.service.history_process import (
    ACK,
    FRAME,
    MARSHAL_VERSION,
    ProcessHistoryRecorder,
    run_bytes,
    writer_command,
)
from callout.service.history_writer import serve
from callout.service.runtime import build_runtime, open_runtime
from callout.settings import Settings
from callout.store.db import Database
from callout.store.errors import StoreError
from callout.store.history import HistoryStore
from tests.service.test_history_recorder import (
    database_url,
    engine,
    event_rows,
    flow,
    registry,
    sample,
    store,
)

__all__ = ["engine", "flow", "registry", "store"]  # fixtures


@pytest.fixture
async def results(engine: Engine, flow: CompiledFlow) -> list[RunResult]:
    return [await engine.run_flow(flow, event={"n": i}, org_id="org-a") for i in range(60)]


@pytest.fixture
async def recorder(
    database: Database, registry: CollectorRegistry
) -> AsyncIterator[ProcessHistoryRecorder]:
    rec = ProcessHistoryRecorder(database_url(database), batch_size=10, registry=registry)
    await rec.start()
    try:
        yield rec
    finally:
        await rec.close()


def writer_of(recorder: ProcessHistoryRecorder) -> int:
    pid = recorder.writer_pid
    assert pid is not None
    return pid


async def test_runs_sent_to_a_writer_that_is_killed_are_written_by_the_next(
    recorder: ProcessHistoryRecorder,
    results: list[RunResult],
    store: HistoryStore,
    database: Database,
    registry: CollectorRegistry,
) -> None:
    """Frames a stalled writer received but never acknowledged are sent again to a new writer
    when it is killed: all 60 runs are stored, none twice, and the restart is counted."""
    for result in results[:20]:
        await recorder.record(result, "org-a")
    await recorder.flush()
    first = writer_of(recorder)
    os.kill(first, signal.SIGSTOP)  # it reads nothing more, acknowledges nothing more
    for result in results[20:]:
        await recorder.record(result, "org-a")  # four frames go to the stopped writer
    os.kill(first, signal.SIGKILL)
    await recorder.flush()
    assert writer_of(recorder) != first
    assert await store.count("org-a") == 60
    assert await event_rows(database) == 180
    assert sample(registry, "callout_history_write_errors_total") == 1
    assert sample(registry, "callout_history_runs_written_total") == 60


def nice_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


async def test_the_writer_runs_at_a_lower_cpu_priority_than_the_service(
    database: Database, results: list[RunResult], store: HistoryStore, registry: CollectorRegistry
) -> None:
    """Where the writer shares a core with the serving process, calls come first: the writer,
    and a writer started after one died, run ``niceness`` lower than this process."""
    rec = ProcessHistoryRecorder(database_url(database), niceness=5, registry=registry)
    await rec.start()
    expected = min(19, nice_of(0) + 5)
    try:
        await rec.record(results[0], "org-a")
        await rec.flush()  # the writer is past its start-up, where it lowers its priority
        first = writer_of(rec)
        assert nice_of(first) == expected
        os.kill(first, signal.SIGKILL)
        await rec.record(results[1], "org-a")
        await rec.flush()  # written by the next writer
        assert writer_of(rec) != first
        assert nice_of(writer_of(rec)) == expected
        assert await store.count("org-a") == 2
    finally:
        await rec.close()


async def test_a_writer_with_niceness_0_keeps_the_service_priority(
    recorder: ProcessHistoryRecorder, results: list[RunResult]
) -> None:
    await recorder.record(results[0], "org-a")
    await recorder.flush()
    assert nice_of(writer_of(recorder)) == nice_of(0)


@pytest.mark.parametrize("niceness", [-1, 20])
def test_a_niceness_outside_0_to_19_is_refused(niceness: int) -> None:
    with pytest.raises(ValueError, match="niceness must be between 0 and 19"):
        ProcessHistoryRecorder("sqlite+aiosqlite:///unused.db", niceness=niceness)


async def test_runs_go_to_the_writer_without_waiting_for_a_batch(
    database: Database, results: list[RunResult], store: HistoryStore, registry: CollectorRegistry
) -> None:
    """The runs that end in one turn of the loop go to the writer at its end, whether or not
    it is still writing the last ones; none waits for a batch to fill (200 runs here): history
    shows a run as soon as the writer has stored it, without flush()."""
    rec = ProcessHistoryRecorder(database_url(database), batch_size=200, registry=registry)
    await rec.start()
    try:
        await rec.record(results[0], "org-a")
        await asyncio.sleep(0)  # one turn of the loop: its frame is sent
        for result in results[1:5]:
            await rec.record(result, "org-a")  # the writer is likely busy: they go anyway
        async with asyncio.timeout(60):
            # The writer is another process: wait for its acknowledgements to come back.
            while sample(registry, "callout_history_runs_written_total") < 5:
                await asyncio.sleep(0.01)
        assert await store.count("org-a") == 5
    finally:
        await rec.close()


async def test_a_full_queue_makes_record_wait_for_the_writer(
    database: Database, results: list[RunResult], store: HistoryStore, registry: CollectorRegistry
) -> None:
    """With queue_size runs unacknowledged (the writer stalled), record_nowait() takes nothing
    and counts nothing, and record() waits and is counted; when the writer goes on, the run is
    taken and every run arrives."""
    rec = ProcessHistoryRecorder(
        database_url(database), queue_size=2, batch_size=1, registry=registry
    )
    await rec.start()
    assert rec.record_nowait(results[0], "org-a")  # room: handed over at once
    await rec.flush()
    pid = writer_of(rec)
    os.kill(pid, signal.SIGSTOP)
    await rec.record(results[1], "org-a")
    await rec.record(results[2], "org-a")
    assert not rec.record_nowait(results[3], "org-a")
    assert sample(registry, "callout_history_queue_full_total") == 0
    third = asyncio.create_task(rec.record(results[3], "org-a"))
    await asyncio.sleep(0)  # one turn of the loop: the task runs until it waits
    assert not third.done()
    assert sample(registry, "callout_history_queue_full_total") == 1
    assert sample(registry, "callout_history_queue_depth") == 2
    os.kill(pid, signal.SIGCONT)
    await third
    await rec.close()
    assert await store.count("org-a") == 4
    assert sample(registry, "callout_history_queue_depth") == 0


async def test_a_runtime_waits_for_room_when_its_history_is_behind(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """run_and_record hands a run over at once while there is room; with queue_size runs
    unwritten (the writer stalled) the next one waits, counted, and is stored once the writer
    goes on: none is dropped."""
    ring = KeyRing([MasterKey.generate("k1")])
    rt = await open_runtime(Settings(data_dir=tmp_path, master_keys=ring.to_env_value()))
    try:
        await rt.recorder.close()
        rec = ProcessHistoryRecorder(
            database_url(rt.db), queue_size=1, batch_size=1, registry=registry
        )
        rt.recorder = rec
        await rec.start()
        start_only = rt.engine.load_flow({"id": "f", "nodes": [{"id": "s", "type": "onFlowStart"}]})
        await rt.run_and_record(start_only, org_id="org-a")
        await rec.flush()
        pid = writer_of(rec)
        os.kill(pid, signal.SIGSTOP)
        try:
            await rt.run_and_record(start_only, org_id="org-a")  # fills the queue
            waiting = asyncio.create_task(rt.run_and_record(start_only, org_id="org-a"))
            while sample(registry, "callout_history_queue_full_total") == 0:
                assert not waiting.done()
                await asyncio.sleep(0)  # one turn of the loop at a time, until it waits
            assert not waiting.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        third = await waiting
        await rec.flush()
        assert await rt.history.count("org-a") == 3
        assert await rt.history.get("org-a", third.run_id) is not None
    finally:
        await rt.aclose()


async def test_close_writes_everything_then_the_writer_exits(
    database: Database, results: list[RunResult], store: HistoryStore, registry: CollectorRegistry
) -> None:
    """close() returns once every recorded run is stored (frames not yet full included), and
    the writer has exited of itself; a later record() is refused."""
    rec = ProcessHistoryRecorder(database_url(database), batch_size=7, registry=registry)
    with pytest.raises(StoreError, match="start"):
        await rec.record(results[0], "org-a")
    await rec.start()
    proc = rec._proc
    assert proc is not None
    for result in results[:50]:
        await rec.record(result, "org-a")
    await rec.close()
    assert await store.count("org-a") == 50
    assert proc.returncode == 0
    with pytest.raises(StoreError, match="not running"):
        await rec.record(results[50], "org-a")


async def test_the_writer_takes_frames_cut_anywhere_and_acknowledges_each_once(
    database: Database, results: list[RunResult], store: HistoryStore
) -> None:
    """The pipe delivers frames in pieces of any size, several at once or one cut in two: the
    writer stores the runs of every whole frame and acknowledges each frame once, in order. A
    frame cut short by the end of the input is neither stored nor acknowledged (the serving
    process, if it lives, sends it again to the next writer)."""
    config = marshal.dumps({"database_url": database_url(database)}, MARSHAL_VERSION)
    stream = [FRAME.pack(0, len(config)) + config]
    for seq, first in enumerate(range(0, 35, 7), 1):
        runs = [run_bytes(result, "org-a") for result in results[first : first + 7]]
        payload = marshal.dumps(runs, MARSHAL_VERSION)
        stream.append(FRAME.pack(seq, len(payload)) + payload)
    last = marshal.dumps([run_bytes(results[40], "org-a")], MARSHAL_VERSION)
    stream.append(FRAME.pack(6, len(last)) + last[:-1])  # the input ends inside this frame
    data = b"".join(stream)
    frames, acks = asyncio.StreamReader(), io.BytesIO()
    writer = asyncio.create_task(serve(frames, acks))
    for start in range(0, len(data), 97):  # never on a frame's edge
        frames.feed_data(data[start : start + 97])
        for _ in range(3):
            await asyncio.sleep(0)  # let the writer read this piece before the next
    frames.feed_eof()
    async with asyncio.timeout(60):
        await writer
    assert [ACK.unpack_from(acks.getvalue(), i)[0] for i in range(0, 40, ACK.size)] == [
        1, 2, 3, 4, 5
    ]  # fmt: skip
    assert len(acks.getvalue()) == 5 * ACK.size
    assert await store.count("org-a") == 35
    assert await store.get("org-a", results[40].run_id) is None


async def test_the_writer_runs_the_package_this_process_imported() -> None:
    """The compiled build or the sources, whichever the serving process runs, first on the
    writer's path: the writer stores runs exactly as this process would encode them."""
    command, env = writer_command()
    root = str(Path(callout.__file__).resolve().parent.parent)
    assert command[1:] == ["-m", "callout.service.history_writer"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root
    probe = await asyncio.create_subprocess_exec(
        command[0],
        "-c",
        "import callout, pathlib; print(pathlib.Path(callout.__file__).resolve().parent.parent)",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await probe.communicate()
    assert out.decode().strip() == root


async def test_a_runtime_uses_the_writer_process_unless_told_otherwise(tmp_path: Path) -> None:
    """open_runtime: the writer process by default, in process with CALLOUT_HISTORY_WRITER."""
    ring = KeyRing([MasterKey.generate("k1")])
    settings = Settings(data_dir=tmp_path, master_keys=ring.to_env_value())
    rt = await open_runtime(settings)
    try:
        assert isinstance(rt.recorder, ProcessHistoryRecorder)
    finally:
        await rt.aclose()
    inline = settings.model_copy(update={"history_writer": "inline"})
    rt = await open_runtime(inline)
    try:
        assert isinstance(rt.recorder, HistoryRecorder)
    finally:
        await rt.aclose()


async def test_a_runtime_starts_its_writer_at_the_configured_niceness(tmp_path: Path) -> None:
    """CALLOUT_HISTORY_WRITER_NICE reaches the writer process."""
    ring = KeyRing([MasterKey.generate("k1")])
    settings = Settings(data_dir=tmp_path, master_keys=ring.to_env_value(), history_writer_nice=3)
    rt = await open_runtime(settings)
    try:
        start_only = rt.engine.load_flow({"id": "f", "nodes": [{"id": "s", "type": "onFlowStart"}]})
        await rt.run_and_record(start_only)
        await rt.recorder.flush()
        assert isinstance(rt.recorder, ProcessHistoryRecorder)
        assert nice_of(writer_of(rt.recorder)) == min(19, nice_of(0) + 3)
    finally:
        await rt.aclose()


async def test_a_writer_process_on_an_in_memory_database_is_refused(tmp_path: Path) -> None:
    """No other process can open an in-memory SQLite database: the setting is named."""
    db = Database("sqlite+aiosqlite://")
    try:
        with pytest.raises(StoreError, match="CALLOUT_HISTORY_WRITER=inline") as failure:
            build_runtime(Settings(data_dir=tmp_path), db, KeyRing([MasterKey.generate("k1")]))
        assert failure.value.field == "history_writer"
    finally:
        await db.dispose()
