"""Every spec in integrations/ compiles and follows the catalog rules: a broken one fails CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from callout.integration import compile_spec
from callout.spec.integration import load_spec_text
from callout.transport import IDEMPOTENT_METHODS
from tests.catalog.helpers import catalog_files

FILES = catalog_files()
#: A caller is waiting while these run: no catalog operation may take the 8 s default or more.
MAX_CATALOG_TIMEOUT_MS = 5000
#: Specs whose API has no cheap read to test a connection with (and why).
NO_CONNECTION_TEST = {"pagerduty-events": "the Events API has no read; a test event would page"}


def test_the_catalog_holds_the_platform_integrations() -> None:
    """The catalog ships HubSpot CRM, Slack and Zendesk at least."""
    assert {"hubspot-crm", "slack", "zendesk"} <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_spec_compiles_cleanly(path: Path) -> None:
    """Each file loads and compiles with no problem, under a slug equal to its file name."""
    spec = compile_spec(load_spec_text(path.read_text(encoding="utf-8"), source=path.name))
    assert spec.slug == path.stem


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_spec_follows_the_catalog_rules(path: Path) -> None:
    """Cites the API it models, has a connection test, bounded timeouts, retries reads only."""
    text = path.read_text(encoding="utf-8")
    header = text.split("\nslug:", 1)[0]
    assert header.startswith("#")
    assert "https://" in header  # the documented endpoint the spec models
    document = load_spec_text(text, source=path.name)
    spec = compile_spec(document)
    assert (spec.test_operation is None) == (spec.slug in NO_CONNECTION_TEST)
    assert spec.allowed_origins
    for key, operation in spec.operations.items():
        assert operation.summary, key
        assert operation.timeout_ms is not None, key
        assert operation.timeout_ms <= MAX_CATALOG_TIMEOUT_MS, key
        if operation.retry is not None:
            assert operation.method in IDEMPOTENT_METHODS, key
