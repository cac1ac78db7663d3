"""JSON Schemas of a spec: checked when publishing, compiled once, run on the call path.

Threat: a spec's schemas come from whoever publishes it (an org may publish private specs), and
fastjsonschema resolves a remote ``$ref`` (or one made remote by ``$id``) by fetching it with
urllib: a request to any address, ``file:`` included, from the service itself. So only local
references (``#/definitions/x``) are accepted, ``$id`` is refused, and the compiler gets
handlers that refuse to fetch. Schemas are meta-validated with ``jsonschema`` first (which
reports exact paths), and fastjsonschema compiles a copy (its resolver rewrites ``$ref`` in
place). A violation names the field and the rule, never the value (it may be personal data).

Threat: a schema's ``pattern`` (and ``patternProperties``) runs on the call path against input a
caller controls. A pattern such as ``^(a+)+$`` takes exponential time on ``aaa...!`` in Python's
``re`` and would hold the event loop, so every call in the process misses its deadline. Compiled
validators search with the ``regex`` engine under ``PATTERN_TIMEOUT`` instead, on at most
``PATTERN_MAX_INPUT`` characters; a search that runs out of time or input counts as no match,
so the input is refused (``invalid``), never waited for.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, NoReturn

import fastjsonschema
import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs shipped; used narrowly
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator
from jsonschema.protocols import Validator as MetaValidator

from callout.errors import InvalidError
from callout.spec._problems import SpecProblem, join_path

__all__ = [
    "PATTERN_MAX_INPUT",
    "PATTERN_TIMEOUT",
    "Validator",
    "compile_validator",
    "schema_problems",
    "undeclared",
]

#: Seconds one ``pattern`` search may take on the call path before it counts as no match.
PATTERN_TIMEOUT: Final = 0.05
#: Longest string (in characters) a ``pattern`` is searched in; longer counts as no match.
PATTERN_MAX_INPUT: Final = 65_536

Validator = Callable[[Any], None]

_DRAFTS: Final[dict[str, type[MetaValidator]]] = {
    "draft-04": Draft4Validator,
    "draft-06": Draft6Validator,
    "draft-07": Draft7Validator,
}
_SCHEMA_URI = re.compile(r"https?://json-schema\.org/(draft-0[467])/schema#?")
#: Keywords whose values are data, not schemas: never searched for ``$ref`` or ``$id``.
_DATA_KEYWORDS: Final = frozenset({"enum", "const", "default", "examples"})
#: Keywords whose values map names (not keywords) to schemas.
_NAME_MAPS: Final = frozenset(
    {"properties", "patternProperties", "definitions", "$defs", "dependencies"}
)
#: What fastjsonschema raises on a definition it cannot compile (jsonschema catches most first).
_DEFINITION_ERRORS: Final = (
    fastjsonschema.JsonSchemaDefinitionException,
    re.error,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
)
_TYPES: Final = "string, number, integer, boolean, object, array, null"


def _no_fetch(uri: str) -> NoReturn:
    raise fastjsonschema.JsonSchemaDefinitionException(f"remote $ref {uri!r} is not allowed")


_HANDLERS: Final = dict.fromkeys(("", "http", "https", "file", "ftp", "data"), _no_fetch)


def schema_problems(schema: Any, path: str) -> list[SpecProblem]:
    """Every problem of ``schema`` (written at ``path`` in the spec); empty when it is usable."""
    if not isinstance(schema, Mapping):
        return [SpecProblem(path, "a JSON Schema must be an object, e.g. {type: object}")]
    draft: type[MetaValidator] = Draft7Validator
    declared = schema.get("$schema")
    if declared is not None:
        found = _SCHEMA_URI.fullmatch(declared) if isinstance(declared, str) else None
        if found is None:
            message = (
                "Callout validates with JSON Schema drafts 4, 6 and 7; remove $schema (draft 7) "
                "or write http://json-schema.org/draft-07/schema#"
            )
            return [SpecProblem(join_path(path, "$schema"), message)]
        draft = _DRAFTS[found.group(1)]
    problems = list(_reference_problems(schema, path))
    meta = draft(draft.META_SCHEMA, format_checker=draft.FORMAT_CHECKER)
    for error in sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.path]):
        where = path
        for part in error.path:
            where = join_path(where, part)
        if error.path and error.path[-1] == "type":
            message = f"unknown type; use one of {_TYPES} (or a list of them)"
        else:
            message = f"{error.message} (JSON Schema rule {error.validator!r})"
        problems.append(SpecProblem(where, message))
    if not problems:
        try:
            _compile(schema)
        except _DEFINITION_ERRORS as exc:
            problems.append(SpecProblem(path, f"the schema does not compile: {exc}"))
    return problems


def _reference_problems(node: Any, path: str) -> Iterator[SpecProblem]:
    """Non-local ``$ref`` and any ``$id``/``id``: both would make the compiler fetch."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _reference_problems(item, join_path(path, i))
        return
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        where = join_path(path, key)
        if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
            message = "only local references such as #/definitions/phone are allowed; inline it"
            yield SpecProblem(where, message)
        elif key in ("$id", "id") and isinstance(value, str):
            yield SpecProblem(where, f"{key} is not supported; remove it (use local $ref only)")
        elif key in _NAME_MAPS and isinstance(value, Mapping):
            for name, sub in value.items():
                yield from _reference_problems(sub, join_path(where, name))
        elif key not in _DATA_KEYWORDS:
            yield from _reference_problems(value, where)


class _BoundedPattern:
    """A compiled schema pattern searched with a time and input limit (see the module's threat)."""

    __slots__ = ("_compiled",)

    def __init__(self, source: str) -> None:
        try:
            self._compiled = regex.compile(source)
        except regex.error as exc:
            raise fastjsonschema.JsonSchemaDefinitionException(
                f"pattern {source!r} does not compile: {exc}"
            ) from None

    def search(self, text: str) -> Any:
        return _bounded(self._compiled.search, text)

    def match(self, text: str) -> Any:  # the generated code's ``format`` checks
        return _bounded(self._compiled.match, text)


def _bounded(find: Callable[..., Any], text: str) -> Any:
    """``find(text)`` within the limits; None (no match) past them."""
    if len(text) > PATTERN_MAX_INPUT:
        return None
    try:
        return find(text, timeout=PATTERN_TIMEOUT)
    except TimeoutError:
        return None


def _compile(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    # use_default=False: validation must not write defaults into the caller's data.
    check = fastjsonschema.compile(
        copy.deepcopy(dict(schema)), handlers=_HANDLERS, use_default=False
    )
    # The generated code looks its patterns (a schema's, and its own ``format`` ones) up in this
    # table at every check: swap each for a bounded one (the sources are already in Python
    # syntax: fastjsonschema turned $ into \Z).
    patterns = check.__globals__.get("REGEX_PATTERNS", {})
    for key, compiled in patterns.items():
        patterns[key] = _BoundedPattern(compiled.pattern)
    return check


def compile_validator(schema: Mapping[str, Any], *, root: str, code: str, what: str) -> Validator:
    """A validator raising ``InvalidError(code=code, field=f"{root}.<path>")``.

    ``what`` names the schema in messages ("the operation's inputSchema"). Call only with a
    schema that ``schema_problems`` accepted.
    """
    check = _compile(schema)
    definition = schema
    accepts = _shortcut(schema)

    def validate(data: Any) -> None:
        if accepts is not None and accepts(data):
            return
        try:
            check(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _violation(exc, data, root, code, what, definition) from None

    return validate


#: Python types that are, beyond doubt, of each JSON Schema type (``integer`` also takes 1.0,
#: which the shortcut leaves to the full check).
_SURELY: Final[Mapping[str, str]] = {
    "string": "str",
    "integer": "int",
    "number": "int, float",
    "boolean": "bool",
    "null": "NoneType",
}
#: Keywords that do not constrain the data.
_ANNOTATIONS: Final = frozenset({"description", "title", "examples", "$comment"})


def _shortcut(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """For the usual input schema (an object of typed properties, some required, nothing
    else), one expression that accepts data only when the full check would accept it too:
    ``True`` skips the full check, ``False`` means run it (it has the precise message).
    None when the schema says more than that."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if (
        schema.get("type") != "object"
        or not set(schema) <= {"type", "properties", "required", *_ANNOTATIONS}
        or not isinstance(properties, Mapping)
        or not isinstance(required, list)
        or not all(isinstance(name, str) and name in properties for name in required)
    ):
        return None
    names: dict[str, Any] = {"type": type, "dict": dict, "M": _ABSENT, "NoneType": type(None)}
    names |= {"str": str, "int": int, "float": float, "bool": bool}  # what _SURELY names
    terms = ["type(d) is dict"]
    for i, (name, rules) in enumerate(properties.items()):
        kind = rules.get("type") if isinstance(rules, Mapping) else None
        if not isinstance(kind, str) or kind not in _SURELY:
            return None
        if not set(rules) <= {"type", *_ANNOTATIONS}:
            return None
        names[f"k{i}"] = name
        test = f"type(v{i}) in ({_SURELY[kind]},)"
        if name in required:
            terms.append(f"((v{i} := d.get(k{i}, M)) is not M and {test})")
        else:
            terms.append(f"((v{i} := d.get(k{i}, M)) is M or {test})")
    # Only identifiers made here are code; property names are bound through ``names``.
    shortcut: Callable[[Any], bool] = eval(  # noqa: S307
        f"lambda d: {' and '.join(terms)}", {"__builtins__": {}, **names}
    )
    return shortcut


_ABSENT: Final = object()


def _violation(
    exc: fastjsonschema.JsonSchemaValueException,
    data: Any,
    root: str,
    code: str,
    what: str,
    schema: Mapping[str, Any],
) -> InvalidError:
    name = exc.name or "data"
    field = root + name.removeprefix("data")
    rule = exc.rule or "schema"
    at = _at(data, (exc.path or ["data"])[1:])
    if rule == "required" and isinstance(at, Mapping):
        missing = [k for k in (exc.rule_definition or ()) if k not in at]
        if missing:
            field = f"{field}.{missing[0]}"
            message = f"{field} is required ({what} lists it under 'required'); provide it"
            return InvalidError(message, code=code, field=field)
    if rule == "additionalProperties" and isinstance(at, Mapping):
        definition = exc.definition if isinstance(exc.definition, Mapping) else schema
        extra = _extra_keys(at, definition)
        if extra:
            field = f"{field}.{extra[0]}"
            message = f"{field} is not a property {what} declares; remove it or fix its name"
            return InvalidError(message, code=code, field=field)
    rest = (exc.message or "").removeprefix(name).strip() or "does not match the schema"
    message = f"{field} {rest} ({what}, rule {rule!r})"
    return InvalidError(message, code=code, field=field)


def _at(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _extra_keys(data: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties") or {}
    patterns = [re.compile(p) for p in (schema.get("patternProperties") or {})]
    return [str(k) for k in data if k not in props and not any(p.search(str(k)) for p in patterns)]


def undeclared(schema: Mapping[str, Any], segments: list[str]) -> tuple[int, list[str]] | None:
    """Where ``segments`` leaves what ``schema`` declares: ``(index, names declared there)``,
    or None when the whole path is declared. ``properties`` (also inside ``allOf``/``anyOf``/
    ``oneOf`` and local ``$ref``), ``patternProperties``, an ``additionalProperties`` schema,
    and list ``items`` (for a numeric segment) count as declared."""
    current: list[Mapping[str, Any]] = [schema]
    for i, segment in enumerate(segments):
        found: list[Mapping[str, Any]] = []
        names: list[str] = []
        for sub in (s for c in current for s in _branches(c, schema, 0)):
            props = sub.get("properties")
            if isinstance(props, Mapping):
                names += [str(n) for n in props]
                if isinstance(props.get(segment), Mapping):
                    found.append(props[segment])
            for pattern, item in (sub.get("patternProperties") or {}).items():
                if isinstance(item, Mapping) and _search(pattern, segment):
                    found.append(item)
            extra = sub.get("additionalProperties")
            if isinstance(extra, Mapping):
                found.append(extra)
            items = sub.get("items")
            if segment.isdigit() and isinstance(items, Mapping):
                found.append(items)
            elif segment.isdigit() and isinstance(items, list) and int(segment) < len(items):
                found.append(items[int(segment)])
        if not found:
            return i, list(dict.fromkeys(names))
        current = found
    return None


def _branches(node: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Iterator[Any]:
    """``node``, its ``allOf``/``anyOf``/``oneOf`` members and local ``$ref`` targets."""
    if depth > 16 or not isinstance(node, Mapping):
        return
    yield node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target: Any = root
        for raw in ref.lstrip("#").strip("/").split("/") if ref.strip("#/") else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        yield from _branches(target, root, depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        for member in node.get(key) or ():
            yield from _branches(member, root, depth + 1)


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False
