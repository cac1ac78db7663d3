"""Tests for tests/pg.py: missing PostgreSQL binaries fail loudly, saying how to get them."""

from __future__ import annotations

import pytest

from tests import pg


def test_missing_binaries_fail_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without initdb anywhere, the server helper raises (never skips) and names `make test`."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    with pytest.raises(pg.PostgresUnavailable) as caught:
        pg.start_postgres()
    assert "make test" in str(caught.value)


def test_binaries_are_found_in_the_debian_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the PATH, the newest /usr/lib/postgresql/<version>/bin is used."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    found = [f"/usr/lib/postgresql/{v}/bin/initdb" for v in ("9", "15", "13")]
    monkeypatch.setattr("glob.glob", lambda pattern: list(found))
    assert str(pg.find_binary("initdb")) == "/usr/lib/postgresql/15/bin/initdb"
