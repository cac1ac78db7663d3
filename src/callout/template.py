"""Templates: compiled once when a flow or spec is saved, rendered in context for each call.

Threat: scope values come from callers, upstream APIs and flow authors, and a value must never
change the structure of what it is rendered into. In a URL every placeholder after the path starts
is percent-encoded as ONE component (a component that is only dots too, so ``..`` cannot climb);
a header value refuses CR, LF and NUL; a JSON body is built as data, never by concatenation.
``{{secret.*}}`` compiles only with ``scopes=SPEC_SCOPES``, i.e. inside integration specs.

Syntax: ``{{ scope.a.b }}``, ``{{ vars.items[0].name }}`` (= ``vars.items.0.name``); a bare first
segment that is not a scope name means ``vars.<name>``; one filter, ``{{ vars.x | default: "x" }}``
with a JSON literal, used when the path is missing or null. URL placeholders before the path are
raw: one at the very start is a base URL (``{{conn.baseUrl}}/v2/x``, its trailing ``/`` dropped
before a literal ``/``); any other may not contain ``/ ? # @ \\`` or whitespace (host position).
A rendered URL is already encoded: send it as ``yarl.URL(url, encoded=True)``, or yarl will
decode ``%2E%2E`` and normalise it away.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote

from yarl import URL

from callout.errors import TemplateError

__all__ = [
    "FLOW_SCOPES",
    "SPEC_SCOPES",
    "JsonTemplate",
    "Scope",
    "Template",
    "TextTemplate",
    "UrlTemplate",
    "compile_header",
    "compile_json",
    "compile_text",
    "compile_url",
    "compile_value",
    "is_single_name",
    "lookup",
]

Scope = Mapping[str, Any]
Render = Callable[[Scope], Any]
Segments = tuple[tuple[str, int | None], ...]

FLOW_SCOPES: Final = frozenset({"vars", "event", "contact", "config", "agent", "callee"})
SPEC_SCOPES: Final = FLOW_SCOPES | {"input", "conn", "secret"}

_MISSING: Final[Any] = object()
_HEAD = re.compile(r"[^\W\d][\w-]*")
_SEGMENT = re.compile(r"\.([\w-]+)|\[(\d+)\]")
_SPACE = re.compile(r"\s*")
_FILTER = re.compile(r"\|\s*default\s*:\s*")
_SCHEME_SEP = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*)?:?//")
_HOST_FORBIDDEN = re.compile(r"[/?#@\\\s]")
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_SOURCE_MAX = 200
_ATOMS: Final = frozenset({str, int, float, bool, type(None)})
# ASCII -> itself when unreserved (RFC 3986), else %XX: str.translate beats quote() 5x here.
_ENCODE: Final = [
    chr(i) if chr(i).isalnum() or chr(i) in "-._~" else f"%{i:02X}" for i in range(128)
]


def _no_constant(name: str) -> None:
    raise ValueError(name)


_LITERAL = json.JSONDecoder(parse_constant=_no_constant)  # NaN and Infinity are not JSON


def _fail(
    message: str, code: str, field: str | None, source: str | None, path: str | None = None
) -> TemplateError:
    where = f"{field}: " if field else ""
    return TemplateError(where + message, code=code, field=field, template=source, path=path)


def _short(source: str) -> str:
    return repr(source if len(source) <= _SOURCE_MAX else source[:_SOURCE_MAX] + "...")


# -- paths -----------------------------------------------------------------------------------


def _resolve(scope: Scope, head: str, rest: Segments) -> Any:
    """The value at ``head`` then ``rest`` in ``scope``, or ``_MISSING``: the one path resolver."""
    cur = scope.get(head, _MISSING)
    for key, index in rest:
        if type(cur) is dict or isinstance(cur, Mapping):
            cur = cur.get(key, _MISSING)
        elif index is not None and isinstance(cur, list | tuple) and index < len(cur):
            cur = cur[index]
        else:
            return _MISSING
    return cur


def _parse_path_at(text: str, pos: int) -> tuple[str, Segments, int] | None:
    if (m := _HEAD.match(text, pos)) is None:
        return None
    segments: list[tuple[str, int | None]] = []
    end = m.end()
    while (s := _SEGMENT.match(text, end)) is not None:
        key = s.group(1) or s.group(2)
        segments.append((key, int(key) if key.isdigit() else None))
        end = s.end()
    return m.group(), tuple(segments), end


@lru_cache(maxsize=4096)
def _parse_path(path: str) -> tuple[str, Segments]:
    parsed = _parse_path_at(path, 0)
    if parsed is None or parsed[2] != len(path):
        message = f"{path!r} is not a path; write names joined by dots, e.g. vars.items[0].name"
        raise _fail(message, "template_syntax", None, None, path)
    return parsed[0], parsed[1]


def is_single_name(path: str) -> bool:
    """Whether ``path`` is one name, which ``lookup`` reads as ``scope.get(path)``."""
    return _HEAD.fullmatch(path) is not None


def lookup(scope: Scope, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at ``path`` (``a.b.0.c`` or ``a.b[0].c``), whose first segment is a key
    of ``scope`` (no bare-name rewriting here). A malformed path is a ``TemplateError``."""
    head, rest = _parse_path(path)
    value = _resolve(scope, head, rest)
    return (False, None) if value is _MISSING else (True, value)


# -- parsing ---------------------------------------------------------------------------------


class _Hole:
    """One compiled placeholder: where it reads from, its default, and whom to blame."""

    __slots__ = ("default", "field", "has_default", "head", "path", "rest", "source")

    def __init__(self, head: str, rest: Segments, source: str, field: str | None) -> None:
        self.head, self.rest, self.source, self.field = head, rest, source, field
        self.path = ".".join([head, *(key for key, _ in rest)])
        self.default: Any = None
        self.has_default = False

    def get(self, scope: Scope) -> Any:
        value = _resolve(scope, self.head, self.rest)
        if value is None or value is _MISSING:
            if self.has_default:
                return self.default
            if value is _MISSING:
                why = (
                    f"uses {self.path!r}, which does not exist; set it earlier in the flow or "
                    f'add a fallback: {{{{{self.path} | default: "..."}}}}'
                )
                raise self.fail(why, "missing_path")
        return value

    def fail(self, why: str, code: str) -> TemplateError:
        """An error naming this placeholder's template and path (never its value)."""
        message = f"template {_short(self.source)} {why}"
        return _fail(message, code, self.field, self.source, self.path)


def _parse(source: str, scopes: frozenset[str], field: str | None) -> tuple[list[str], list[_Hole]]:
    """Split ``source`` into literal chunks around placeholders: ``len(lits) == len(holes) + 1``."""
    lits: list[str] = []
    holes: list[_Hole] = []
    pos = 0
    while (start := source.find("{{", pos)) != -1:
        lits.append(source[pos:start])
        hole, pos = _parse_hole(source, start, scopes, field)
        holes.append(hole)
    lits.append(source[pos:])
    return lits, holes


def _parse_hole(
    source: str, start: int, scopes: frozenset[str], field: str | None
) -> tuple[_Hole, int]:
    def fail(why: str, at: int) -> TemplateError:
        message = f"{why} at offset {at} in template {_short(source)}"
        return _fail(message, "template_syntax", field, source)

    def skip(at: int) -> int:
        return m.end() if (m := _SPACE.match(source, at)) is not None else at

    if source.find("}}", start + 2) == -1:
        raise fail("unclosed placeholder: '{{' without a matching '}}'", start)
    pos = skip(start + 2)
    if source.startswith("}}", pos):
        raise fail("empty placeholder '{{}}'", start)
    if (parsed := _parse_path_at(source, pos)) is None:
        raise fail("expected a path such as vars.name", pos)
    head, rest, pos = parsed
    if head not in scopes:
        if head in SPEC_SCOPES:
            only = "secrets are" if head == "secret" else f"the {head!r} scope is"
            message = (
                f"{{{{{head}...}}}} is not available here: {only} only available inside "
                "integration specs, never in a flow's nodes or input mappings"
            )
            raise _fail(message, "unknown_scope", field, source, head)
        head, rest = "vars", ((head, None), *rest)
    hole = _Hole(head, rest, source, field)
    pos = skip(pos)
    if (m := _FILTER.match(source, pos)) is not None:
        try:
            hole.default, pos = _LITERAL.raw_decode(source, m.end())
        except ValueError:
            hole.default = _MISSING
        if hole.default is _MISSING or isinstance(hole.default, dict | list):
            why = 'default takes a JSON literal ("text", 42, true, false or null)'
            raise fail(why, m.end())
        hole.has_default = True
        pos = skip(pos)
    if source.startswith("|", pos):
        raise fail("unknown filter; the only filter is '| default: <JSON literal>'", pos)
    if not source.startswith("}}", pos):
        raise fail("expected '}}' or '| default: <literal>'", pos)
    return hole, pos + 2


# -- rendering pieces ------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as text: strings as is, null as empty, everything else as compact JSON."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, str):  # a StrEnum such as Outcome renders as its value
        return str.__str__(value)
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (tuples become lists), so renders never share state."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _paths(holes: list[_Hole]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(h.path for h in holes))


def _getter(hole: _Hole) -> Render:
    """``hole.get``, made faster for the usual shape: one or two plain keys read from dicts.

    Anything else (a list index, another Mapping, a missing key, a null) takes ``hole.get``,
    so the two cannot disagree: the fast path only returns a value ``hole.get`` would return.
    """
    head, rest, general = hole.head, hole.rest, hole.get
    if len(rest) == 1 and rest[0][1] is None:
        key = rest[0][0]

        def get_one(scope: Scope) -> Any:
            cur = scope.get(head)
            if type(cur) is dict and (value := cur.get(key)) is not None:
                return value
            return general(scope)

        return get_one
    if len(rest) == 2 and rest[0][1] is None and rest[1][1] is None:
        first, second = rest[0][0], rest[1][0]

        def get_two(scope: Scope) -> Any:
            cur = scope.get(head)
            if type(cur) is dict and type(cur := cur.get(first)) is dict:
                value = cur.get(second)
                if value is not None:
                    return value
            return general(scope)

        return get_two
    return general


def _whole_getter(hole: _Hole) -> Render:
    """A renderer of a value that is one placeholder: its JSON value, a copy when it is a
    container (renders never share state). One plain key read from a dict is inlined."""
    atoms, rest = _ATOMS, hole.rest
    if len(rest) == 1 and rest[0][1] is None:
        head, key, general = hole.head, rest[0][0], hole.get
        present = (str, int, float, bool)  # the atoms but null, which hole.get may default

        def whole_one(scope: Scope) -> Any:
            cur = scope.get(head)
            if type(cur) is dict and type(value := cur.get(key)) in present:
                return value
            value = general(scope)
            return value if type(value) in atoms else _copy(value)

        return whole_one
    get = _getter(hole)

    def whole(scope: Scope) -> Any:
        value = get(scope)
        return value if type(value) in atoms else _copy(value)

    return whole


def _text_fn(hole: _Hole) -> Render:
    get = _getter(hole)

    def render(scope: Scope) -> str:
        value = get(scope)
        return value if type(value) is str else _text(value)

    return render


def _generated(expression: str, names: dict[str, Any]) -> Render:
    """``lambda scope: <expression>`` over ``names``: one call where closures would nest.

    The source holds only identifiers made here (``l0``, ``f1``, ``k2``...); every literal and
    renderer is bound through ``names``, so nothing a template says becomes code.
    """
    namespace = {"__builtins__": {}, **names}  # a lambda reads free names from its globals
    render: Render = eval(f"lambda scope: {expression}", namespace)  # noqa: S307
    return render


def _joiner(lits: list[str], fns: list[Render]) -> Callable[[Scope], str]:
    """A renderer that interleaves precomputed literal chunks with placeholder renderers."""
    if not fns:
        first = lits[0]
        return lambda scope: first
    names: dict[str, Any] = {}
    terms = []
    for i, lit in enumerate(lits):
        if lit:
            names[f"l{i}"] = lit
            terms.append(f"l{i}")
        if i < len(fns):
            names[f"f{i}"] = fns[i]
            terms.append(f"f{i}(scope)")
    return _generated(" + ".join(terms), names)


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """A compiled template. ``source`` is the text as written; ``paths`` every path it reads."""

    source: str
    paths: tuple[str, ...]
    is_static: bool


# -- text and headers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class TextTemplate(Template):
    """Plain text; with ``_header`` set (the header's name), CR, LF and NUL are refused."""

    _join: Callable[[Scope], str]
    _header: str | None

    def render(self, scope: Scope) -> str:
        """The text with every placeholder's value substituted (null as empty)."""
        out = self._join(scope)
        if self._header is not None and ("\r" in out or "\n" in out or "\0" in out):
            raise _header_error(self._header, self.source)
        return out


def _header_error(field: str, source: str) -> TemplateError:
    message = (
        f"header value of template {_short(source)} contains CR, LF or NUL, which could start "
        "a new header; refused (remove line breaks from the value)"
    )
    return _fail(message, "header_injection", field, source)


def compile_text(
    source: str, *, scopes: frozenset[str] = FLOW_SCOPES, field: str | None = None
) -> TextTemplate:
    """Compile a plain-text template."""
    lits, holes = _parse(source, scopes, field)
    join = _joiner(lits, [_text_fn(h) for h in holes])
    return TextTemplate(source, _paths(holes), not holes, join, None)


def compile_header(
    source: str, *, scopes: frozenset[str] = FLOW_SCOPES, field: str | None = None
) -> TextTemplate:
    """Compile a header value; rendering refuses CR, LF and NUL, naming ``field``."""
    header = field or "header"
    if any(c in source for c in "\r\n\0"):
        raise _header_error(header, source)
    lits, holes = _parse(source, scopes, field)
    join = _joiner(lits, [_text_fn(h) for h in holes])
    return TextTemplate(source, _paths(holes), not holes, join, header)


# -- URLs ------------------------------------------------------------------------------------


def _url_text(value: Any, hole: _Hole) -> str:
    if type(value) is str:
        return value
    if isinstance(value, Mapping | list | tuple):
        why = f"puts {hole.path!r}, an object or a list, in a URL; use a string or a number"
        raise hole.fail(why, "invalid_url")
    return _text(value)


def _component(value: Any, hole: _Hole) -> str:
    """One URL component: all but unreserved characters encoded; ``.`` and ``..`` too."""
    text = _url_text(value, hole)
    if not text.isascii():
        return quote(text, safe="", errors="replace")
    if text and not text.strip("."):
        return "%2E" * len(text)
    return text.translate(_ENCODE)


def _component_fn(hole: _Hole, *, null: str | None = "") -> Render:
    """A renderer of ``hole`` as one encoded URL component; a null value renders as ``null``
    (empty text, or None for a query entry that is then left out)."""
    get = _getter(hole)

    def render(scope: Scope) -> str | None:
        value = get(scope)
        if type(value) is str:  # the usual case, inlined: ASCII that is not only dots
            if value.isascii() and value.strip("."):
                return value.translate(_ENCODE)
        elif type(value) is int:
            return str(value)
        elif value is None:
            return null
        return _component(value, hole)

    return render


def _raw_fn(hole: _Hole, *, base: bool, strip_slash: bool) -> Render:
    get = _getter(hole)

    def render(scope: Scope) -> str:
        text = _url_text(get(scope), hole)
        if base:
            slash = strip_slash and text.endswith("/") and not text.endswith("//")
            return text[:-1] if slash else text
        if _HOST_FORBIDDEN.search(text):
            why = (
                f"puts {hole.path!r} in the host part of the URL, where / ? # @ \\ and whitespace "
                "are refused; put path segments after a literal '/' in the template"
            )
            raise hole.fail(why, "invalid_url")
        return text

    return render


# An absolute http(s) URL whose host part holds none of / ? # @ \ or whitespace: the common
# case is accepted by this one match; anything else gets the full parse (and its message).
_PLAIN_URL = re.compile(
    r"(?i:https?)://[^/?#@:\[\]\\\s\x00-\x1f\x7f]+(?::[0-9]{1,5})?(?:[/?#][^\s\x00-\x1f\x7f]*)?"
)


def _check_url(url: str, source: str, field: str | None) -> None:
    if _PLAIN_URL.fullmatch(url) is not None:
        return
    try:
        parsed = URL(url, encoded=True)
        ok = parsed.scheme in ("http", "https") and bool(parsed.raw_host)
        ok = ok and _URL_FORBIDDEN.search(url) is None
        parsed.port  # noqa: B018 -- reading the port validates it
    except (ValueError, TypeError):
        ok = False
    if not ok:
        message = (
            f"URL template {_short(source)} does not render to an absolute http or https URL "
            "with a host and no whitespace or control characters; start it with https://host/ "
            "or a base URL such as {{conn.baseUrl}}"
        )
        raise _fail(message, "invalid_url", field, source)


# (encoded "name=", renderer of the encoded value; it gives None to leave the entry out)
_QueryEntry = tuple[str, Callable[[Scope], str | None]]


@dataclass(frozen=True, slots=True, eq=False)
class UrlTemplate(Template):
    """An absolute http(s) URL; path, query and fragment placeholders are encoded components."""

    #: ``render(scope)``: the URL, already percent-encoded: send it as ``yarl.URL(url,
    #: encoded=True)``. The compiled renderer itself (``_url_renderer``), no method in between.
    render: Callable[[Scope], str]
    _query: tuple[_QueryEntry, ...]
    _field: str | None
    #: What ``bind`` folds: the path's literals, its holes with their renderers and whether
    #: each sits before the path (raw), and the query entries' holes.
    _parts: _UrlParts | None = None

    def bind(self, fixed: Mapping[str, Mapping[str, Any]]) -> UrlTemplate:
        """This URL with every placeholder that reads only ``fixed`` (e.g. ``{"conn": config}``)
        rendered once, now. When no placeholder is left before the path, the URL's structure
        is checked here, once, instead of on every render.

        The bound template renders what this one renders for any scope whose ``fixed`` scopes
        equal ``fixed``. A placeholder that fails to render now (a missing path, a host that
        is not one) is left as it is, so each render raises what it always raised.
        """
        parts = self._parts
        if parts is None or not any(
            h.head in fixed for h in (*parts.holes, *(h for q in parts.query_holes for h in q))
        ):
            return self
        lits, fns, raws = [parts.lits[0]], [], []
        for hole, fn, raw, lit in zip(
            parts.holes, parts.fns, parts.raws, parts.lits[1:], strict=True
        ):
            text = _fixed_text((hole,), fn, fixed)
            if text is None:
                fns.append(fn)
                raws.append(raw)
                lits.append(lit)
            else:
                lits[-1] += text + lit
        entries = tuple(
            (
                name,
                join if (text := _fixed_text(holes, join, fixed)) is None else _joiner([text], []),
            )
            for (name, join), holes in zip(self._query, parts.query_holes, strict=True)
        )
        check = any(raws)
        if not check:
            try:
                _check_url("x".join(lits), self.source, self._field)
            except TemplateError:
                return self  # each render raises it, as before
        join = _joiner(lits, fns)
        render = _url_renderer(join, entries, check, lits, self.source, self._field)
        return UrlTemplate(self.source, self.paths, self.is_static, render, entries, self._field)


def _url_renderer(
    join: Callable[[Scope], str],
    query: tuple[_QueryEntry, ...],
    check: bool,
    lits: list[str],
    source: str,
    field: str | None,
) -> Callable[[Scope], str]:
    """The renderer of a URL whose text before the query is ``join`` and whose query entries
    are ``query``; ``check``: its structure is checked after each render (a placeholder sits
    before the path)."""
    if not check and not any(c in lit for lit in lits for c in "?&#"):
        # Every placeholder renders as one encoded component, which holds no ? & or #: the
        # query goes after a "?" known now, and there is no fragment to put it before.
        if not query:
            return join
        if len(query) == 1:
            ((name, value_of),) = query
            prefix = "?" + name

            def render_one_entry(scope: Scope) -> str:
                url = join(scope)
                value = value_of(scope)
                return url if value is None else url + prefix + value

            return render_one_entry

        def render_query(scope: Scope) -> str:
            url = join(scope)
            text = _query_text(query, scope)
            return url + "?" + text if text else url

        return render_query

    def render(scope: Scope) -> str:
        url = join(scope)
        if query and (text := _query_text(query, scope)):
            if "#" in url:  # the query goes before the fragment
                base, hash_, fragment = url.partition("#")
            else:
                base, hash_, fragment = url, "", ""
            sep = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
            url = base + sep + text + hash_ + fragment
        if check:
            _check_url(url, source, field)
        return url

    return render


def _query_text(query: tuple[_QueryEntry, ...], scope: Scope) -> str:
    """The query's entries joined by "&", each left out when it renders to None."""
    text = ""
    for name, value_of in query:
        if (value := value_of(scope)) is not None:
            text = f"{text}&{name}{value}" if text else name + value
    return text


def compile_url(
    source: str,
    *,
    query: Mapping[str, Any] | None = None,
    scopes: frozenset[str] = FLOW_SCOPES,
    field: str | None = None,
    query_field: str = "query",
) -> UrlTemplate:
    """Compile a URL, with an optional ``query`` mapping of name -> template appended.

    A query entry that is exactly one placeholder whose value is null is left out, so an
    optional input can be omitted with ``{{input.limit | default: null}}``. Errors in a query
    entry name ``<query_field>.<name>``.
    """
    lits, holes = _parse(source, scopes, field)
    fns: list[Render] = []
    raws: list[bool] = []
    started = seen_sep = False
    for i, hole in enumerate(holes):
        if not started:  # the path starts at the first / ? or # after "scheme://"
            lit, pos = lits[i], 0
            if not seen_sep and (m := _SCHEME_SEP.match(lit)) is not None:
                seen_sep, pos = True, m.end()
            started = any(lit.find(c, pos) != -1 for c in "/?#")
        raws.append(not started)
        if started:
            fns.append(_component_fn(hole))
        else:
            base = i == 0 and not lits[0]
            fns.append(_raw_fn(hole, base=base, strip_slash=lits[1].startswith("/")))
    raw = any(raws)
    entries: list[_QueryEntry] = []
    query_holes: list[tuple[_Hole, ...]] = []
    all_holes = list(holes)
    for name, value in (query or {}).items():
        text = value if isinstance(value, str) else _text(value)
        qlits, qholes = _parse(text, scopes, f"{query_field}.{name}")
        all_holes += qholes
        query_holes.append(tuple(qholes))
        single = qholes[0] if qlits == ["", ""] else None
        if single is not None:  # the whole value is one placeholder: left out when it is null
            join = _component_fn(single, null=None)
        else:
            join = _joiner([quote(q, safe="") for q in qlits], [_component_fn(h) for h in qholes])
        entries.append((quote(str(name), safe="") + "=", join))
    if not raw:
        _check_url("x".join(lits), source, field)
    join = _joiner(lits, fns)
    query_entries = tuple(entries)
    parts = _UrlParts(tuple(lits), tuple(holes), tuple(fns), tuple(raws), tuple(query_holes))
    return UrlTemplate(
        source,
        _paths(all_holes),
        not all_holes,
        _url_renderer(join, query_entries, raw, lits, source, field),
        query_entries,
        field,
        parts,
    )


@dataclass(frozen=True, slots=True)
class _UrlParts:
    """A compiled URL's pieces, kept for ``UrlTemplate.bind``."""

    lits: tuple[str, ...]
    holes: tuple[_Hole, ...]
    fns: tuple[Render, ...]
    raws: tuple[bool, ...]
    query_holes: tuple[tuple[_Hole, ...], ...]


def _fixed_text(
    holes: tuple[_Hole, ...], render: Callable[[Scope], str | None], fixed: Scope
) -> str | None:
    """What ``render`` gives now, when it reads ``holes`` only, each from ``fixed``, and renders
    without error; else None (it is rendered per call). A query entry that renders to None
    (left out) is rendered per call too: rare, and kept simple."""
    if not holes or not all(h.head in fixed for h in holes):
        return None
    try:
        return render(fixed)
    except TemplateError:
        return None


# -- JSON ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class JsonTemplate(Template):
    """A JSON value whose strings may hold placeholders; renders fresh data every time."""

    #: ``render(scope)``: the value; whole-string placeholders keep their JSON type, others
    #: are stringified. The compiled renderer itself, called with no method in between.
    render: Render


def _child(field: str | None, key: str | int) -> str:
    if isinstance(key, int):
        return f"{field or ''}[{key}]"
    return f"{field}.{key}" if field else key


def _const(value: Any) -> Render:
    if isinstance(value, dict):
        flat = all(type(v) in _ATOMS for v in value.values())
        return (lambda scope: value.copy()) if flat else (lambda scope: _copy(value))
    if isinstance(value, list):
        flat = all(type(v) in _ATOMS for v in value)
        return (lambda scope: value.copy()) if flat else (lambda scope: _copy(value))
    return lambda scope: value


def _compile_node(
    value: Any, scopes: frozenset[str], field: str | None, acc: list[_Hole]
) -> tuple[bool, Any]:
    """``(True, plain value)`` for a subtree without placeholders, else ``(False, renderer)``."""
    if isinstance(value, str):
        lits, holes = _parse(value, scopes, field)
        acc += holes
        if not holes:
            return True, value
        if lits == ["", ""]:
            return False, _whole_getter(holes[0])
        return False, _joiner(lits, [_text_fn(h) for h in holes])
    if value is None or isinstance(value, bool | int | float):
        return True, value
    if isinstance(value, Mapping):
        entries: list[tuple[str, Render | None, bool, Any]] = []
        for key, item in value.items():
            key_text = key if isinstance(key, str) else _text(key)
            sub = _child(field, key_text)
            klits, kholes = _parse(key_text, scopes, sub)
            acc += kholes
            kfn = _joiner(klits, [_text_fn(h) for h in kholes]) if kholes else None
            entries.append((key_text, kfn, *_compile_node(item, scopes, sub, acc)))
        if all(kfn is None and static for _, kfn, static, _ in entries):
            return True, {key: item for key, _, _, item in entries}
        names: dict[str, Any] = {}
        pairs = []
        for i, (key, kfn, static, item) in enumerate(entries):
            names[f"k{i}"], names[f"f{i}"] = (
                key if kfn is None else kfn,
                _const(item) if static else item,
            )
            pairs.append(f"k{i}{'' if kfn is None else '(scope)'}: f{i}(scope)")
        return False, _generated("{" + ", ".join(pairs) + "}", names)
    if isinstance(value, list | tuple):
        items = [_compile_node(item, scopes, _child(field, i), acc) for i, item in enumerate(value)]
        if all(static for static, _ in items):
            return True, [item for _, item in items]
        names = {
            f"f{i}": _const(item) if static else item for i, (static, item) in enumerate(items)
        }
        return False, _generated("[" + ", ".join(f"{name}(scope)" for name in names) + "]", names)
    message = (
        f"a {type(value).__name__} is not JSON; a JSON template holds objects, lists, strings, "
        "numbers, booleans and null"
    )
    raise _fail(message, "not_json", field, None)


def compile_json(
    value: Any, *, scopes: frozenset[str] = FLOW_SCOPES, field: str | None = None
) -> JsonTemplate:
    """Compile a JSON body template (a deep structure of dict/list/str/number/bool/null)."""
    holes: list[_Hole] = []
    static, compiled = _compile_node(value, scopes, field, holes)
    source = (
        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, skipkeys=True)
    )
    return JsonTemplate(source, _paths(holes), static, _const(compiled) if static else compiled)


def compile_value(
    value: Any, *, scopes: frozenset[str] = FLOW_SCOPES, field: str | None = None
) -> JsonTemplate:
    """Compile a ``setVariable`` value or a node input: the same rules as ``compile_json``."""
    return compile_json(value, scopes=scopes, field=field)
