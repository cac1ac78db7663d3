"""Running the real ``callout`` command from tests, without blocking the test's event loop
(which serves the upstreams the command calls)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping


async def run_callout(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """``python -m callout ARGS`` with this environment plus ``env``: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callout",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
