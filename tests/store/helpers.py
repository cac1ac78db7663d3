"""Helpers shared by the store tests."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from callout.store.db import Database


def spec_doc(slug: str = "acme-crm", name: str = "Acme CRM", **extra: Any) -> dict[str, Any]:
    """A small spec document; ``extra`` changes its content (and so its hash)."""
    return {"slug": slug, "name": name, "operations": {"ping": {"method": "GET"}}, **extra}


def content_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def encoded_forms(secret: str) -> list[bytes]:
    """The secret as bytes, and its base64 and base64url forms (padded and not)."""
    raw = secret.encode()
    forms = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    return forms + [f.rstrip(b"=") for f in forms[1:]]


def sqlite_files(db: Database) -> list[Path]:
    """The SQLite database file and its -wal and -shm companions that exist."""
    assert db.url.database is not None
    main = Path(db.url.database)
    return [p for p in (main, Path(f"{main}-wal"), Path(f"{main}-shm")) if p.exists()]
