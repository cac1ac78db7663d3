"""Fixtures for store tests: a key ring and its key file, and the repositories on `database`."""

from __future__ import annotations

from pathlib import Path

import pytest

from callout.crypto import KeyRing, MasterKey, write_key_file
from callout.store.audit import AuditLog
from callout.store.connections import ConnectionStore
from callout.store.db import Database
from callout.store.specs import SpecStore


@pytest.fixture
def ring() -> KeyRing:
    """A one-key ring, primary "k1"."""
    return KeyRing([MasterKey.generate("k1")])


@pytest.fixture
def key_file(tmp_path: Path, ring: KeyRing) -> Path:
    """A 0600 key file holding ``ring``."""
    path = tmp_path / "keys" / "master.json"
    path.parent.mkdir(mode=0o700)
    write_key_file(path, ring)
    return path


@pytest.fixture
def specs(database: Database, ring: KeyRing) -> SpecStore:
    return SpecStore(database, ring)


@pytest.fixture
def connections(database: Database, ring: KeyRing) -> ConnectionStore:
    return ConnectionStore(database, ring)


@pytest.fixture
def audit(database: Database, ring: KeyRing) -> AuditLog:
    return AuditLog(database, ring)
