"""Fixtures for engine tests: an engine whose guard admits 127.0.0.1 (tests only)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callout.engine.engine import Engine
from callout.engine.services import EngineConfig
from callout.guard import EgressPolicy

LOOPBACK = EgressPolicy.from_entries(["127.0.0.1/32"])


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """An engine allowed to reach upstreams on 127.0.0.1, as tests' upstreams live there."""
    async with Engine(EngineConfig(egress=LOOPBACK)) as eng:
        yield eng
