"""A spec document as text and as data: reading YAML or JSON, its canonical form, hash and diff.

Reading is strict on purpose: what is published is what runs, so a document must be plain JSON
data. YAML is read with the safe loader, with YAML 1.2 booleans (only ``true``/``false``, so
``NO`` stays a string) and no timestamps (``2024-01-01`` stays a string); a key written twice,
a non-string key, NaN or Infinity is refused rather than silently resolved. Aliases are expanded
into independent copies, bounded by ``MAX_NODES`` so an alias bomb cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml

from callout.spec._problems import SpecError, SpecProblem, join_path

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SPEC_BYTES",
    "canonical_json",
    "content_hash",
    "diff_documents",
    "load_spec_text",
]

#: The largest spec text accepted, in bytes of UTF-8.
MAX_SPEC_BYTES: Final = 1 << 20
#: Values in a document once YAML aliases are expanded.
MAX_NODES: Final = 100_000
#: Nesting of objects and lists in a document.
MAX_DEPTH: Final = 64

#: JSON text starts with an object and a quoted key; ``{slug: a}`` is YAML.
_JSON_START = re.compile(r'\s*\{\s*(?:"|\})')
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 booleans, no timestamps and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"the key {key_node.value!r} is written twice; keep one",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _fail(message: str, path: str = "") -> SpecError:
    return SpecError([SpecProblem(path, message)])


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON; write a number")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is written twice; keep one")
        out[key] = value
    return out


def load_spec_text(text: str | bytes, *, source: str = "spec") -> dict[str, Any]:
    """Read a spec written as YAML or JSON (when it starts with ``{"``) into plain data.

    Raises ``SpecError`` naming ``source`` and the line and column of a syntax error.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise _fail(f"{source} is larger than {MAX_SPEC_BYTES} bytes; split the integration")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _fail(f"{source} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if len(text) > MAX_SPEC_BYTES:
        raise _fail(f"{source} is larger than {MAX_SPEC_BYTES} bytes; split the integration")
    text = text.removeprefix("\ufeff")
    try:
        data = _read_json(text, source) if _JSON_START.match(text) else _read_yaml(text, source)
        plain = _plain(data, "", [0], 0)
    except RecursionError:
        raise _fail(f"{source} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    if plain is None:
        raise _fail(f"{source} is empty; write an object with slug, name and operations")
    if not isinstance(plain, dict):
        raise _fail(f"{source} must be an object with slug, name and operations at the top")
    return plain


def _read_json(text: str, source: str) -> Any:
    decoder = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise _fail(f"{source} is not valid JSON: {where}: {exc.msg}; fix the syntax") from None
    except ValueError as exc:  # a duplicate key or NaN, from the hooks above
        raise _fail(f"{source} is not valid JSON: {exc}") from None


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise _fail(f"{source} is not valid YAML: {where}{what}; fix the syntax") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{source} is not valid YAML: {exc}; fix the syntax") from None


def _plain(value: Any, path: str, count: list[int], depth: int) -> Any:
    """An independent JSON-shaped copy of ``value``, or a ``SpecError`` naming what is not."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _fail(f"the spec has more than {MAX_NODES} values (YAML aliases expanded)")
    if depth > MAX_DEPTH:
        raise _fail(f"the spec is nested more than {MAX_DEPTH} levels deep", path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail("NaN and infinity are not JSON numbers; write a finite number", path)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                message = f"the key {key!r} is a {type(key).__name__}; quote it to make a string"
                raise _fail(message, path)
            out[key] = _plain(item, join_path(path, key), count, depth + 1)
        return out
    if isinstance(value, list):
        return [_plain(item, join_path(path, i), count, depth + 1) for i, item in enumerate(value)]
    message = f"a {type(value).__name__} is not JSON; use a string, number, boolean, list or object"
    raise _fail(message, path)


def _mapping_as_dict(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")


def canonical_json(document: Mapping[str, Any]) -> str:
    """The identity of a spec's content: keys sorted, compact, non-ASCII kept as is."""
    return json.dumps(
        document,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_mapping_as_dict,
    )


def content_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``canonical_json(document)``: equal content, equal hash."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


_ABSENT: Final[Any] = object()


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after``, sorted by path.

    Each entry is ``{"path", "change", "before", "after"}`` with ``change`` one of ``added``,
    ``removed``, ``changed`` (``before`` is None when added, ``after`` None when removed).
    Objects are compared key by key, lists and other values whole.
    """
    out: list[dict[str, Any]] = []
    _diff(before, after, "", out)
    return sorted(out, key=lambda entry: entry["path"])


def _diff(before: Any, after: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in before.keys() | after.keys():
            _diff(before.get(key, _ABSENT), after.get(key, _ABSENT), join_path(path, key), out)
    elif before is _ABSENT:
        out.append({"path": path, "change": "added", "before": None, "after": after})
    elif after is _ABSENT:
        out.append({"path": path, "change": "removed", "before": before, "after": None})
    elif canonical_json({"v": before}) != canonical_json({"v": after}):
        out.append({"path": path, "change": "changed", "before": before, "after": after})
