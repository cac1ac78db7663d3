"""The history writer process: ``python -m callout.service.history_writer``.

Started by ``ProcessHistoryRecorder`` (``service/history_process``, which states the protocol and
the threat), never by hand. It reads frames of finished runs on stdin, scrubs, encodes and
stores the runs of every frame that has come in one batch with the in-process
``HistoryRecorder`` (the same scrubbing, fallbacks and retries), and acknowledges those frames
on stdout once the batch is committed.
At the end of its input (the serving process closed the pipe, or died) it writes what it has
read and exits.

Threat: the runs it reads hold secrets. It logs only error class names and counts (through
the scrubbing log processor), and stdout carries acknowledgements only: the file descriptor is
kept for them, and anything else printed to stdout goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import marshal
import os
import signal
from typing import Any, BinaryIO

from prometheus_client import CollectorRegistry

from callout.engine.runner import RunResult
from callout.engine.wire import RunWire, run_from_wire, without_values
from callout.logs import configure_logging
from callout.service.history import HistoryRecorder
from callout.service.history_process import ACK, FRAME, MAX_NICENESS
from callout.store.db import Database
from callout.store.history import HistoryStore

__all__ = ["main", "serve", "tune_collector"]

_log = logging.getLogger("callout.history")

#: Bytes read from the pipe at once (what is there, up to this).
_READ_SIZE = 1 << 20
#: The collector's thresholds here: a young generation 70 times the default's 700 objects.
_GC_THRESHOLDS = (50_000, 20, 100)


async def serve(frames: asyncio.StreamReader, acks: BinaryIO) -> None:
    """Write the runs of every frame read from ``frames``; acknowledge each on ``acks``."""
    header = await frames.readexactly(FRAME.size)
    _, size = FRAME.unpack(header)
    config: dict[str, Any] = _loads(await frames.readexactly(size))
    db = Database(config["database_url"])
    # Blocking SQLite writes: this loop has nothing to do while a batch is written.
    store = HistoryStore(db, blocking=True)
    recorder = HistoryRecorder(store, registry=CollectorRegistry())
    buffer = bytearray()
    try:
        while True:
            data = await frames.read(_READ_SIZE)
            if not data:
                # The end of the input; a frame cut short is one the serving process (if it
                # still lives) has not seen acknowledged, and sends again.
                return
            buffer += data
            # Every whole frame that came while the last batch was written goes in one batch
            # (one transaction): the busier the writer, the larger its batches.
            done: list[int] = []
            runs: list[tuple[RunResult, str | None]] = []
            offset = 0
            while len(buffer) - offset >= FRAME.size:
                seq, size = FRAME.unpack_from(buffer, offset)
                end = offset + FRAME.size + size
                if len(buffer) < end:
                    break
                runs += [
                    _run(_loads(run)) for run in _loads(bytes(buffer[offset + FRAME.size : end]))
                ]
                done.append(seq)
                offset = end
            del buffer[:offset]
            if done:
                # Nothing else runs on this loop: no turn of it between two runs' encoding.
                await recorder.write(runs, cooperative=False)
                acks.write(b"".join(ACK.pack(seq) for seq in done))
                acks.flush()
    finally:
        store.close()
        await db.dispose()


def _run(wire: RunWire) -> tuple[RunResult, str | None]:
    """The run a wire describes; if it cannot be read back (a bug), the run without its vars
    and events, as the in-process recorder keeps a run it cannot encode."""
    try:
        return run_from_wire(wire)
    except Exception as exc:  # noqa: BLE001  -- keep what can be kept of the run
        _log.error("history wire unreadable", extra={"errorType": type(exc).__name__})
        return run_from_wire(without_values(wire))


def _loads(data: bytes) -> Any:
    # Only ever what the serving process that started us wrote, through our own pipe.
    return marshal.loads(data)  # noqa: S302


async def _main(ack_fd: int) -> None:
    loop = asyncio.get_running_loop()
    frames = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(frames), os.fdopen(0, "rb", buffering=0)
    )
    with os.fdopen(ack_fd, "wb", buffering=0) as acks:
        await serve(frames, acks)


def main(argv: list[str] | None = None) -> None:
    """Entry point: JSON logs on stderr; acknowledgements on the stdout it was started with.

    ``--nice N`` lowers this process's CPU priority by N first (its threads inherit it).
    """
    parser = argparse.ArgumentParser(prog="python -m callout.service.history_writer")
    parser.add_argument("--nice", type=int, default=0, choices=range(MAX_NICENESS + 1))
    niceness = parser.parse_args(argv).nice
    if niceness:
        os.nice(niceness)
    # Ctrl-C reaches the whole process group: the serving process decides when this one ends
    # (it closes the pipe once everything is written), not the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ack_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the acknowledgements
    configure_logging(level="WARNING")
    tune_collector()
    asyncio.run(_main(ack_fd))


def tune_collector() -> None:
    """The cyclic collector as this process runs it (``bench/history_writer.py`` too).

    What the writer holds for long is its modules; what it makes is batches of acyclic run
    data, freed by reference counting. At the default pace the collector walked a batch still
    being encoded again and again, and the modules in every full collection: with a backlog,
    77 us of CPU a run instead of 55 (bench/RESULTS.md, fourteenth pass). So: what is loaded
    now is frozen out of collections, and collections are far rarer (not off: a cycle made by
    a failure's traceback is still freed).
    """
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


if __name__ == "__main__":
    main()
