"""A throwaway PostgreSQL server for tests: initdb in a temp dir, loopback only, a free port.

Run as root (as on the project's machines) the server runs as the ``postgres`` user, because
``initdb`` refuses root. ``make test`` installs the server binaries where they are missing; this
module never skips: no binaries is a failure that says how to get them.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
    "/usr/lib/postgresql/*/bin. `make test` installs them "
    "(apt-get update && apt-get install -y postgresql); run it, or install them yourself."
)


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start."""


def find_binary(name: str) -> Path:
    """``name`` on PATH, else from the newest ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise PostgresUnavailable(MISSING)
    return Path(candidates[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running server; ``url()`` gives a SQLAlchemy URL, ``dsn()`` an asyncpg one."""

    port: int
    root: Path
    user: str = "callout"
    #: A migrated database that ``create_database(template=...)`` can copy (set by conftest).
    template: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    async def create_database(self, template: str | None = None) -> str:
        """A new database with a unique name, empty or a copy of ``template``; returns the name."""
        name = f"t_{uuid.uuid4().hex}"
        copy = f' TEMPLATE "{template}"' if template else ""
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            _run([str(find_binary("pg_ctl")), "-D", str(self.root / "data"), "stop", "-m", "fast"])
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; the image has a `postgres` user for this.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_postgres(argv), check=True, capture_output=True, text=True, timeout=120
    )


def start_postgres(attempts: int = 3) -> PostgresServer:
    """initdb a temp cluster and start it on a free loopback port (retried if the port is taken)."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    as_root = os.geteuid() == 0
    # Under /tmp when root: the postgres user must reach the directory, and $TMPDIR may not let it.
    # mkdtemp makes a fresh 0700 directory with a random name, so /tmp is safe here.
    parent = "/tmp" if as_root else None  # noqa: S108 -- see above
    root = Path(tempfile.mkdtemp(prefix="callout-pg-", dir=parent))
    if as_root:
        shutil.chown(root, "postgres")
    data, log = root / "data", root / "log"
    try:
        _run([str(initdb), "-D", str(data), "-A", "trust", "-U", "callout", "--no-sync"])
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip()}") from exc
    last = ""
    for _ in range(attempts):
        port = free_port()
        # Durability is worthless for a throwaway cluster; fsync off makes CREATE DATABASE fast.
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        try:
            _run([str(pg_ctl), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
        except subprocess.CalledProcessError:
            last = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            continue
        server = PostgresServer(port=port, root=root)
        atexit.register(server.stop)  # also stopped if the session is interrupted
        return server
    shutil.rmtree(root, ignore_errors=True)
    raise PostgresUnavailable(f"PostgreSQL did not start:\n{last}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A server for the duration of the block, stopped afterwards whatever happens."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
