"""Tests for templates: syntax, scopes, missing paths, and context-aware rendering."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from callout.errors import InvalidError, Outcome, TemplateError
from callout.template import (
    FLOW_SCOPES,
    SPEC_SCOPES,
    JsonTemplate,
    TextTemplate,
    UrlTemplate,
    compile_header,
    compile_json,
    compile_text,
    compile_url,
    compile_value,
    lookup,
)

SCOPE: dict[str, Any] = {
    "vars": {
        "name": "Ada",
        "n": 42,
        "pi": 3.5,
        "ok": True,
        "nothing": None,
        "obj": {"a": 1, "b": [1, 2]},
        "items": [{"name": "first"}, {"name": "second"}],
        "outcome": Outcome.S4XX,
    },
    "event": {"from": "+15551234", "to": "+15550000"},
    "contact": {"id": "c-1"},
    "config": {"region": "eu"},
    "agent": {"id": "ag-7"},
    "callee": {"number": "+15559999"},
    "input": {"phone": "+15551234", "limit": 10},
    "conn": {"baseUrl": "https://api.example.com/base", "accountId": "acc 1"},
    "secret": {"apiKey": "sk-123"},
}


def with_vars(**values: Any) -> dict[str, Any]:
    return {**SCOPE, "vars": {**SCOPE["vars"], **values}}


def render_error(template: TextTemplate | UrlTemplate | JsonTemplate, scope: Any) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        template.render(scope)
    return info.value


# -- syntax and paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{vars.name}}!", "Hi Ada!"),
        ("Hi {{ vars.name }}!", "Hi Ada!"),
        ("{{name}}", "Ada"),
        ("{{vars.items.1.name}}", "second"),
        ("{{vars.items[0].name}}", "first"),
        ("{{vars.obj.b[1]}}", "2"),
        ("{{event.from}} -> {{event.to}}", "+15551234 -> +15550000"),
        (
            "{{contact.id}}/{{config.region}}/{{agent.id}}/{{callee.number}}",
            "c-1/eu/ag-7/+15559999",
        ),
        ("n={{vars.n}} pi={{vars.pi}} ok={{vars.ok}}", "n=42 pi=3.5 ok=true"),
        ("[{{vars.nothing}}]", "[]"),
        ("{{vars.obj}}", '{"a":1,"b":[1,2]}'),
        ("no placeholders } {", "no placeholders } {"),
        ("{{vars.outcome}}", "4xx"),
    ],
)
def test_text_renders(source: str, expected: str) -> None:
    """Text templates substitute scope values; null is empty, other non-strings are JSON."""
    assert compile_text(source).render(SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "paths"),
    [
        ("{{name}} {{vars.items[0].name}}", ("vars.name", "vars.items.0.name")),
        ("{{event.from}}{{event.from}}", ("event.from",)),
        ("static", ()),
    ],
)
def test_paths_are_normalised(source: str, paths: tuple[str, ...]) -> None:
    """``paths`` lists each referenced path once, as ``scope.a.b`` with bare names under vars."""
    template = compile_text(source)
    assert template.paths == paths
    assert template.is_static is (not paths)
    assert template.source == source


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        ("abc {{", 4),
        ("abc {{vars.x", 4),
        ("{{}}", 0),
        ("{{ }}", 0),
        ("{{vars..x}}", 6),
        ("{{1abc}}", 2),
        ("{{vars.x | upper}}", 9),
        ("{{vars.x | default: 'single'}}", 20),
        ('{{vars.x | default: "unterminated}}', 20),
        ("{{vars.x | default: {}}}", 20),
        ("{{vars.x | default: NaN}}", 20),
        ("{{vars.x y}}", 9),
    ],
)
def test_syntax_errors_name_field_and_offset(source: str, offset: int) -> None:
    """Malformed placeholders fail at compile time, naming the field and the offset."""
    with pytest.raises(TemplateError) as info:
        compile_text(source, field="nodes[2].config.url")
    error = info.value
    assert error.code == "template_syntax"
    assert error.field == "nodes[2].config.url"
    assert error.message.startswith("nodes[2].config.url: ")
    assert f"at offset {offset}" in error.message
    assert isinstance(error, InvalidError)


@pytest.mark.parametrize("scope_name", ["secret", "conn", "input"])
def test_spec_scopes_are_refused_in_flows(scope_name: str) -> None:
    """``secret``, ``conn`` and ``input`` are compile-time errors outside integration specs."""
    with pytest.raises(TemplateError) as info:
        compile_json({"k": f"x {{{{{scope_name}.apiKey}}}}"}, field="body")
    assert info.value.code == "unknown_scope"
    assert info.value.field == "body.k"
    assert "only available inside integration specs" in info.value.message


def test_secret_scope_message() -> None:
    """Refusing ``{{secret.*}}`` says that secrets are only available inside integration specs."""
    with pytest.raises(TemplateError) as info:
        compile_header("Bearer {{secret.apiKey}}", field="headers.Authorization")
    assert "secrets are only available inside integration specs" in info.value.message


def test_spec_scopes_compile_in_specs() -> None:
    """With ``SPEC_SCOPES`` the spec-only scopes resolve."""
    template = compile_text("{{secret.apiKey}}/{{conn.accountId}}", scopes=SPEC_SCOPES)
    assert template.render(SCOPE) == "sk-123/acc 1"
    assert FLOW_SCOPES < SPEC_SCOPES


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("vars.name", (True, "Ada")),
        ("vars.items[1].name", (True, "second")),
        ("vars.items.1.name", (True, "second")),
        ("vars.nothing", (True, None)),
        ("vars.items.5.name", (False, None)),
        ("vars.name.first", (False, None)),
        ("nope.x", (False, None)),
        ("vars.obj.b.0", (True, 1)),
    ],
)
def test_lookup(path: str, expected: tuple[bool, Any]) -> None:
    """``lookup`` resolves the template path syntax and says whether the path was found."""
    assert lookup(SCOPE, path) == expected


def test_lookup_refuses_malformed_paths() -> None:
    """A malformed path given to ``lookup`` is a ``TemplateError``."""
    with pytest.raises(TemplateError):
        lookup(SCOPE, "vars..x")


# -- missing paths and defaults --------------------------------------------------------------


def test_missing_path_names_template_and_path() -> None:
    """A missing path is a render-time error naming the template, the path and the fix."""
    template = compile_text("Hi {{vars.contactName}}", field="nodes[1].config.value")
    error = render_error(template, SCOPE)
    assert error.code == "missing_path"
    assert error.path == "vars.contactName"
    assert error.template == "Hi {{vars.contactName}}"
    assert error.field == "nodes[1].config.value"
    assert "'Hi {{vars.contactName}}'" in error.message
    assert "'vars.contactName'" in error.message
    assert "default:" in error.message
    assert error.outcome == "invalid"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{vars.missing | default: "there"}}', "there"),
        ("{{vars.missing|default:42}}", "42"),
        ("{{vars.missing | default: true}}", "true"),
        ("{{vars.missing | default: null}}", ""),
        ('{{vars.nothing | default: "was null"}}', "was null"),
        ('{{vars.name | default: "unused"}}', "Ada"),
        ('{{vars.missing | default: "a }} b"}}', "a }} b"),
    ],
)
def test_default_filter_in_text(source: str, expected: str) -> None:
    """The default applies when the path is missing or null."""
    assert compile_text(source).render(SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{vars.missing | default: "x"}}', "x"),
        ("{{vars.missing | default: 7}}", 7),
        ("{{vars.missing | default: 1.5}}", 1.5),
        ("{{vars.missing | default: false}}", False),
        ("{{vars.missing | default: null}}", None),
    ],
)
def test_default_filter_keeps_json_type(source: str, expected: Any) -> None:
    """In a JSON value the default literal keeps its JSON type."""
    value = compile_value(source).render(SCOPE)
    assert value == expected
    assert type(value) is type(expected)


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b"])
def test_header_refuses_cr_lf_nul(bad: str) -> None:
    """A header value containing CR, LF or NUL is refused, naming the header, not the value."""
    template = compile_header("id {{vars.trace}}", field="headers.X-Trace")
    error = render_error(template, with_vars(trace=bad))
    assert error.code == "header_injection"
    assert error.field == "headers.X-Trace"
    assert "headers.X-Trace" in error.message
    assert bad not in error.message


def test_header_refuses_literal_line_breaks_at_compile_time() -> None:
    """A header template whose own text has a line break fails when it is compiled."""
    with pytest.raises(TemplateError) as info:
        compile_header("a\r\nb", field="headers.X")
    assert info.value.code == "header_injection"


def test_header_renders_plain_values() -> None:
    """An ordinary header value renders like text."""
    assert compile_header("Bearer {{vars.name}}").render(SCOPE) == "Bearer Ada"


# -- URLs ------------------------------------------------------------------------------------

NASTY = ["+15551234", "a&b=c", "a/b", "x?y", "frag#x", "k=v", "100%", "a b", "héllo wörld ☎", ""]


@pytest.mark.parametrize("value", NASTY)
def test_url_values_cannot_change_structure(value: str) -> None:
    """``+ & / ? # = %``, spaces and non-ASCII stay inside their one path segment or value."""
    template = compile_url("https://api.example.com/v1/{{vars.a}}/x?q={{vars.a}}&r=1")
    url = URL(template.render(with_vars(a=value)), encoded=True)
    assert url.host == "api.example.com"
    assert url.parts == ("/", "v1", value, "x")
    assert list(url.query.keys()) == ["q", "r"]
    assert url.query["q"] == value
    assert url.query["r"] == "1"
    assert url.fragment == ""


@pytest.mark.parametrize("value", [".", "..", "..."])
def test_url_dot_segments_cannot_climb(value: str) -> None:
    """A value of only dots is encoded, so it cannot become a ``..`` path segment."""
    rendered = compile_url("https://api.example.com/v1/{{vars.a}}/x").render(with_vars(a=value))
    assert rendered == "https://api.example.com/v1/" + "%2E" * len(value) + "/x"
    assert URL(rendered, encoded=True).parts == ("/", "v1", value, "x")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+15551234", "https://api.example.com/v1/calls?from=%2B15551234"),
        (15551234, "https://api.example.com/v1/calls?from=15551234"),
        (True, "https://api.example.com/v1/calls?from=true"),
        (None, "https://api.example.com/v1/calls?from="),
        ("é", "https://api.example.com/v1/calls?from=%C3%A9"),
    ],
)
def test_url_query_component_encoding(value: Any, expected: str) -> None:
    """Query values are encoded as one component; numbers and booleans as JSON, null as empty."""
    template = compile_url("https://api.example.com/v1/calls?from={{event.from}}")
    assert template.render({"event": {"from": value}}) == expected


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://api.example.com/base", "https://api.example.com/base/v2/x"),
        ("https://api.example.com/base/", "https://api.example.com/base/v2/x"),
        ("http://10.0.0.1:8080", "http://10.0.0.1:8080/v2/x"),
    ],
)
def test_url_base_is_raw(base: str, expected: str) -> None:
    """A placeholder that starts the URL is a raw base URL and may carry a path."""
    template = compile_url("{{conn.baseUrl}}/v2/x", scopes=SPEC_SCOPES)
    assert template.render({"conn": {"baseUrl": base}}) == expected


def test_url_host_placeholder_is_raw() -> None:
    """A placeholder after ``scheme://`` is inserted raw, port included."""
    template = compile_url("https://{{vars.host}}/x/{{vars.id}}")
    rendered = template.render(with_vars(host="api.example.com:8443", id="a/b"))
    assert rendered == "https://api.example.com:8443/x/a%2Fb"


@pytest.mark.parametrize("host", ["evil.com/#", "evil.com?x", "user@evil.com", "a b", "a\\b"])
def test_url_host_placeholder_refuses_structure(host: str) -> None:
    """A host-position value may not contain ``/ ? # @ \\`` or whitespace."""
    error = render_error(compile_url("https://{{vars.host}}.example.com/x"), with_vars(host=host))
    assert error.code == "invalid_url"
    assert host not in error.message


@pytest.mark.parametrize(
    "base",
    ["ftp://files.example.com", "not a url", "/relative/only", "https://", "", "https://h\n.com"],
)
def test_url_must_render_absolute_http(base: str) -> None:
    """A URL that does not render to an absolute http(s) URL with a host is ``invalid_url``."""
    template = compile_url("{{conn.baseUrl}}/v2/x", scopes=SPEC_SCOPES, field="operations.x.url")
    error = render_error(template, {"conn": {"baseUrl": base}})
    assert error.code == "invalid_url"
    assert error.field == "operations.x.url"


@pytest.mark.parametrize(
    "source",
    [
        "ftp://x.example.com/{{vars.a}}",
        "/v1/{{vars.a}}",
        "x",
        "https://h.example.com/a b/{{vars.a}}",
    ],
)
def test_static_url_part_is_checked_at_compile_time(source: str) -> None:
    """When the scheme and host are literal, a bad URL fails when it is compiled."""
    with pytest.raises(TemplateError) as info:
        compile_url(source)
    assert info.value.code == "invalid_url"


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2]])
def test_url_refuses_objects_and_lists(value: Any) -> None:
    """An object or a list cannot go into a URL."""
    error = render_error(compile_url("https://api.example.com/{{vars.a}}"), with_vars(a=value))
    assert error.code == "invalid_url"
    assert error.path == "vars.a"


def test_url_query_mapping() -> None:
    """A ``query`` mapping is appended with names and values encoded as components."""
    template = compile_url(
        "{{conn.baseUrl}}/v2/contacts",
        query={"phone": "{{input.phone}}", "account": "{{conn.accountId}}", "a&b": "x=y"},
        scopes=SPEC_SCOPES,
    )
    rendered = template.render(SCOPE)
    assert rendered == (
        "https://api.example.com/base/v2/contacts?phone=%2B15551234&account=acc%201&a%26b=x%3Dy"
    )
    assert dict(URL(rendered, encoded=True).query) == {
        "phone": "+15551234",
        "account": "acc 1",
        "a&b": "x=y",
    }
    assert template.paths == ("conn.baseUrl", "input.phone", "conn.accountId")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("https://h.example.com/x?a=1", "https://h.example.com/x?a=1&q=v"),
        ("https://h.example.com/x?", "https://h.example.com/x?q=v"),
        ("https://h.example.com/x#top", "https://h.example.com/x?q=v#top"),
    ],
)
def test_url_query_mapping_joins_existing_query(source: str, expected: str) -> None:
    """Query entries join an existing query with ``&`` and go before a fragment."""
    assert compile_url(source, query={"q": "v"}).render(SCOPE) == expected


def test_url_query_mapping_omits_null_single_placeholder() -> None:
    """A query entry that is one placeholder rendering to null is left out."""
    template = compile_url(
        "https://h.example.com/x",
        query={"limit": "{{input.missing | default: null}}", "n": "{{input.limit}}"},
        scopes=SPEC_SCOPES,
    )
    assert template.render(SCOPE) == "https://h.example.com/x?n=10"


def test_url_query_mapping_error_names_entry() -> None:
    """A missing path in a query entry names that entry."""
    template = compile_url(
        "https://h.example.com/x",
        query={"phone": "{{input.nope}}"},
        scopes=SPEC_SCOPES,
        query_field="operations.lookup.query",
    )
    error = render_error(template, SCOPE)
    assert error.field == "operations.lookup.query.phone"
    assert error.path == "input.nope"


@given(a=st.text(), b=st.text())
def test_url_structure_holds_for_any_text(a: str, b: str) -> None:
    """For any text, the path keeps its segments, the query its keys, and values round-trip."""
    template = compile_url("https://api.example.com/v1/{{vars.a}}/x?q={{vars.b}}&r=1")
    url = URL(template.render({"vars": {"a": a, "b": b}}), encoded=True)
    assert (url.scheme, url.host) == ("https", "api.example.com")
    assert url.parts == ("/", "v1", a, "x")
    assert list(url.query.keys()) == ["q", "r"]
    assert url.query["q"] == b
    assert url.fragment == ""


@given(
    values=st.lists(st.one_of(st.none(), st.text(), st.integers()), min_size=1, max_size=3),
    segment=st.one_of(st.text(), st.integers()),
)
def test_query_entries_round_trip_and_null_ones_are_left_out(
    values: list[Any], segment: str | int
) -> None:
    """Query entries come after one "?", joined by "&", in order; each value round-trips and
    an entry whose value is null is left out (a URL without a query keeps none)."""
    names = [f"q{i}" for i in range(len(values))]
    template = compile_url(
        "https://api.example.com/v1/{{input.id}}",
        query={name: f"{{{{input.{name} | default: null}}}}" for name in names},
        scopes=SPEC_SCOPES,
    )
    rendered = template.render({"input": {"id": segment, **dict(zip(names, values, strict=True))}})
    url = URL(rendered, encoded=True)
    assert url.parts == ("/", "v1", str(segment))
    kept = [
        (n, v if isinstance(v, str) else str(v))
        for n, v in zip(names, values, strict=True)
        if v is not None
    ]
    assert list(url.query.items()) == kept
    assert ("?" in rendered) == bool(kept)
    assert url.fragment == ""


# A binding renders what the unbound template renders, for every shape of URL a spec uses: a
# base URL, a host placeholder, path and query placeholders over conn and input, with values
# that are good, missing, null, structural or not text at all.
_BIND_SOURCES = [
    ("{{conn.baseUrl}}/v2/{{input.id}}", {"q": "{{input.q}}", "acct": "{{conn.account}}"}),
    ("{{conn.baseUrl}}", {"acct": "a-{{conn.account}}-{{input.q}}"}),
    ("https://{{conn.host}}/x/{{conn.account}}/{{input.id}}#f", None),
    ("https://{{conn.host}}.example.com:{{input.id}}/y", {"n": "{{conn.missing | default: null}}"}),
    ("https://api.example.com/{{conn.account}}?a=1", {"k": "{{conn.account}}"}),
    ("{{input.base}}/{{conn.account}}", None),
]
_TRICKY = st.sampled_from(
    [
        "https://api.example.com",
        "https://api.example.com/base/",
        "http://10.0.0.1:8080",
        "ftp://x.example.com",
        "not a url",
        "evil.com/#",
        "api.example.com",
        "..",
        ".",
        "a/b",
        "",
    ]
)
# The hand-picked values (host, base URL, dot segment, structure) drawn most of the time.
_BIND_VALUES = st.one_of(
    _TRICKY,
    _TRICKY,
    _TRICKY,
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=500)
@given(
    which=st.integers(0, len(_BIND_SOURCES) - 1),
    conn=st.dictionaries(st.sampled_from(["baseUrl", "host", "account"]), _BIND_VALUES),
    inputs=st.dictionaries(st.sampled_from(["id", "q", "base"]), _BIND_VALUES),
)
def test_a_bound_url_renders_what_the_template_renders(
    which: int, conn: dict[str, Any], inputs: dict[str, Any]
) -> None:
    """``bind({"conn": ...})`` folds the connection's config in once; for any config and
    inputs, the bound URL renders the same text, or fails with the same error."""
    source, query = _BIND_SOURCES[which]
    try:
        template = compile_url(source, query=query, scopes=SPEC_SCOPES, field="url")
    except TemplateError:
        return  # a literal part already refused when compiled
    bound = template.bind({"conn": conn})
    scope = {"conn": conn, "input": inputs}

    def outcome(t: UrlTemplate) -> tuple[str, Any]:
        try:
            return "ok", t.render(scope)
        except TemplateError as exc:
            return "error", (exc.code, exc.field, exc.path, exc.message)

    assert outcome(bound) == outcome(template)


def test_binding_the_base_url_checks_the_url_once() -> None:
    """A URL whose base comes from the connection is checked when bound, not per render: a
    good base binds into a template with nothing left to check; a bad one stays unbound and
    fails every render with the same message."""
    template = compile_url("{{conn.baseUrl}}/v2/{{input.id}}", scopes=SPEC_SCOPES)
    good = template.bind({"conn": {"baseUrl": "https://api.example.com/"}})
    assert good is not template
    assert good.render({"input": {"id": "a/b"}}) == "https://api.example.com/v2/a%2Fb"
    bad = {"conn": {"baseUrl": "ftp://files.example.com"}}
    assert template.bind(bad) is template
    assert render_error(template, {**bad, "input": {"id": 1}}).code == "invalid_url"


# -- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{vars.n}}", 42),
        ("{{vars.pi}}", 3.5),
        ("{{vars.ok}}", True),
        ("{{vars.nothing}}", None),
        ("{{vars.obj}}", {"a": 1, "b": [1, 2]}),
        ("{{vars.items}}", [{"name": "first"}, {"name": "second"}]),
        ("{{vars.name}}", "Ada"),
        ("n={{vars.n}}", "n=42"),
        ("{{vars.ok}}!", "true!"),
        ("obj {{vars.obj}}", 'obj {"a":1,"b":[1,2]}'),
        (" {{vars.n}}", " 42"),
        ("{{vars.nothing}}x", "x"),
    ],
)
def test_json_types(value: str, expected: Any) -> None:
    """A whole-string placeholder keeps its JSON type; inside a longer string it is text."""
    rendered = compile_json({"k": value}).render(SCOPE)
    assert rendered == {"k": expected}
    assert type(rendered["k"]) is type(expected)


def test_json_deep_structure_and_keys() -> None:
    """Nested objects and lists render, keys may hold placeholders, static parts stay as is."""
    template = compile_json(
        {
            "caller": "{{event.from}}",
            "meta": {"{{vars.name}}_id": "{{contact.id}}", "static": [1, "two", None, False]},
            "list": ["{{vars.n}}", {"deep": "{{vars.items[1].name}}"}],
        },
        field="body",
    )
    assert template.render(SCOPE) == {
        "caller": "+15551234",
        "meta": {"Ada_id": "c-1", "static": [1, "two", None, False]},
        "list": [42, {"deep": "second"}],
    }
    assert template.paths == (
        "event.from",
        "vars.name",
        "contact.id",
        "vars.n",
        "vars.items.1.name",
    )
    assert json.loads(template.source)["caller"] == "{{event.from}}"


def test_json_renders_never_share_state() -> None:
    """Mutating a render changes neither the scope nor the next render."""
    scope = with_vars(obj={"a": [1]})
    template = compile_json({"o": "{{vars.obj}}", "s": {"x": [1]}})
    first = template.render(scope)
    first["o"]["a"].append(2)
    first["s"]["x"].append(2)
    assert scope["vars"]["obj"] == {"a": [1]}
    assert template.render(scope) == {"o": {"a": [1]}, "s": {"x": [1]}}


def test_json_static_template() -> None:
    """A body without placeholders is static and renders a fresh copy."""
    body = {"a": [1, {"b": None}]}
    template = compile_json(body)
    assert template.is_static
    rendered = template.render({})
    assert rendered == body
    assert rendered is not body


def test_json_missing_path_names_field() -> None:
    """A missing path inside a body names the body field and the template string."""
    template = compile_json({"list": [{"x": "{{vars.absent}}"}]}, field="body")
    error = render_error(template, SCOPE)
    assert error.field == "body.list[0].x"
    assert error.template == "{{vars.absent}}"
    assert error.path == "vars.absent"


def test_json_refuses_non_json_values() -> None:
    """A value that is not JSON-shaped is refused at compile time."""
    with pytest.raises(TemplateError) as info:
        compile_json({"a": object()}, field="body")
    assert info.value.code == "not_json"
    assert info.value.field == "body.a"


def test_compile_value_scalar() -> None:
    """``compile_value`` handles scalars and strings like a JSON body."""
    assert compile_value(5).render(SCOPE) == 5
    assert compile_value("Hi {{vars.name}}").render(SCOPE) == "Hi Ada"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(value=JSON_VALUES)
def test_json_placeholder_round_trips(value: Any) -> None:
    """Any JSON value substituted by a whole-string placeholder comes back equal, typed."""
    rendered = compile_json({"v": "{{vars.v}}", "l": ["{{vars.v}}"]}).render({"vars": {"v": value}})
    assert rendered == {"v": value, "l": [value]}
    assert json.dumps(rendered, sort_keys=True) == json.dumps(
        {"v": value, "l": [value]}, sort_keys=True
    )


@given(value=JSON_VALUES.filter(lambda v: "{{" not in json.dumps(v, ensure_ascii=False)))
def test_json_static_round_trips(value: Any) -> None:
    """Any JSON value without placeholders renders back equal to itself."""
    assert compile_json(value).render({}) == value


PLACEHOLDER_PATHS = ["vars.a", "vars.a.b", "vars.a.b.c", "vars.a.0", "vars.a.b.0", "event.a.b"]


@settings(max_examples=300, deadline=None)
@given(
    a=JSON_VALUES | st.dictionaries(st.sampled_from("abc0"), JSON_VALUES, max_size=3),
    proxy=st.booleans(),
)
def test_property_a_placeholder_reads_what_lookup_finds(a: Any, proxy: bool) -> None:
    """Whatever the scope holds (objects, lists, text, nulls; a read-only Mapping on the way),
    a placeholder renders the value ``lookup`` finds at its path, null as null, and a path
    that is not there is ``missing_path``."""
    inner: Any = MappingProxyType({"b": a}) if proxy else {"b": a}
    scope = {"vars": {"a": a}, "event": {"a": inner}}
    for path in PLACEHOLDER_PATHS:
        template = compile_json({"v": "{{" + path + "}}", "t": "<{{" + path + "}}>"})
        found, value = lookup(scope, path)
        if not found:
            with pytest.raises(TemplateError) as info:
                template.render(scope)
            assert info.value.code == "missing_path"
            continue
        rendered = template.render(scope)
        assert rendered["v"] == value
        assert rendered["t"] == f"<{as_text(value)}>"


def as_text(value: Any) -> str:
    """How a placeholder inside text shows a value: null as empty, JSON for the rest."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
