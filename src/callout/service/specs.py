"""Publishing integration specs, changing their status, and comparing versions."""

from __future__ import annotations

from typing import Any

from callout.integration import compile_spec
from callout.service.runtime import Runtime
from callout.spec.integration import diff_documents, load_spec_text
from callout.store.errors import NotFound
from callout.store.specs import PublishedSpec

__all__ = ["diff_versions", "publish_spec", "set_spec_status"]


async def publish_spec(
    rt: Runtime, text: str | bytes, *, owner_org: str | None, actor: str, source: str = "spec"
) -> PublishedSpec:
    """Validate a spec (YAML or JSON) completely, then store it as the slug's next version.

    A spec with any problem raises ``SpecError`` listing every problem with its path, and
    nothing is published. Identical content returns the existing version (``created`` False).
    """
    document = load_spec_text(text, source=source)
    compiled = compile_spec(document)
    return await rt.specs.publish(
        owner_org=owner_org, document=document, content_hash=compiled.content_hash, actor=actor
    )


async def set_spec_status(
    rt: Runtime, org_id: str | None, slug: str, version: int, status: str, *, actor: str
) -> PublishedSpec:
    """Deprecate (still runs, warns) or retire (runs fail as invalid) a version."""
    published = await rt.specs.set_status(org_id, slug, version, status, actor)
    rt.source.forget_spec(slug)
    return published


async def diff_versions(
    rt: Runtime, org_id: str | None, slug: str, before: int, after: int
) -> list[dict[str, Any]]:
    """What changed from version ``before`` to version ``after`` of a spec."""
    old = await _version(rt, org_id, slug, before)
    new = await _version(rt, org_id, slug, after)
    return diff_documents(old.document, new.document)


async def _version(rt: Runtime, org_id: str | None, slug: str, version: int) -> PublishedSpec:
    found = await rt.specs.get(org_id, slug, version)
    if found is None:
        raise NotFound(f"no integration spec {slug!r} version {version} visible to this org")
    return found
