"""The integration spec document: reading YAML/JSON, its shape, canonical form, hash and diff."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callout.errors import InvalidError
from callout.spec.integration import (
    SpecDocument,
    SpecError,
    SpecProblem,
    canonical_json,
    content_hash,
    diff_documents,
    load_spec_text,
    parse_spec_document,
)

YAML = """\
slug: acme-crm
name: Acme CRM
connection:
  config: {type: object, properties: {baseUrl: {type: string}}}
  secrets: {apiKey: {description: "API key from Settings > API"}}
  auth: {type: bearer, token: "{{secret.apiKey}}"}
  allowedOrigins: ["{{conn.baseUrl}}"]
operations:
  lookupContact:
    method: GET
    url: "{{conn.baseUrl}}/v2/contacts"
    query: {phone: "{{input.phone}}", limit: 5}
    timeoutMs: 3000
    retry: {attempts: 2}
"""


def minimal(**top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "slug": "acme-crm",
        "name": "Acme CRM",
        "operations": {"ping": {"method": "GET", "url": "https://api.acme.com/ping"}},
    }
    doc.update(top)
    return doc


def with_operation(**fields: Any) -> dict[str, Any]:
    op = {"method": "GET", "url": "https://api.acme.com/ping", **fields}
    return minimal(operations={"ping": op})


def problems_of(data: Any) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        parse_spec_document(data)
    return list(caught.value.problems)


# -- reading text ----------------------------------------------------------------------------


def test_yaml_and_json_read_to_the_same_data() -> None:
    """A spec reads the same from YAML and from its JSON rendering."""
    from_yaml = load_spec_text(YAML)
    from_json = load_spec_text(json.dumps(from_yaml, indent=2).encode())
    assert from_yaml == from_json
    assert from_yaml["operations"]["lookupContact"]["query"] == {
        "phone": "{{input.phone}}",
        "limit": 5,
    }


def test_a_shape_valid_spec_parses_into_camel_case_models() -> None:
    """The models keep the document's camelCase names and fill defaults."""
    doc = parse_spec_document(load_spec_text(YAML))
    assert isinstance(doc, SpecDocument)
    op = doc.operations["lookupContact"]
    assert (op.method, op.timeoutMs, op.retry and op.retry.attempts) == ("GET", 3000, 2)
    assert op.inputSchema == {"type": "object"}
    assert doc.connection.allowedOrigins == ["{{conn.baseUrl}}"]
    assert doc.connection.auth.type == "bearer"
    assert parse_spec_document(minimal()).connection.auth.type == "none"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("slug: a\nname: [unclosed\n", "line 3, column 1"),
        ("slug: a\n  name: x\n", "line 2, column 7"),
        ('{"slug": "a",\n "name": }', "line 2, column 10"),
        ('{"slug": "a", "slug": "b"}', "'slug' is written twice"),
        ("slug: a\nslug: b\n", "'slug' is written twice"),
        ('{"n": NaN}', "NaN"),
        ("", "empty"),
        ("- a\n- b\n", "must be an object"),
        ("a: .nan\n", "NaN and infinity"),
        ("1: x\n", "quote it"),
        ("a: !!binary aGk=\n", "bytes is not JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_text_is_a_spec_error_saying_where(text: str | bytes, fragment: str) -> None:
    """Syntax errors name the line and column; non-JSON data is refused, not coerced."""
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, source="acme.yaml")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, InvalidError)
    assert caught.value.code == "spec_invalid"


def test_a_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    """Text starting with ``{`` that is not JSON is read as YAML when it is valid YAML."""
    assert load_spec_text("{slug: acme-crm, name: Acme}") == {"slug": "acme-crm", "name": "Acme"}


def test_yaml_reads_yaml_1_2_booleans_and_keeps_dates_as_text() -> None:
    """``NO``/``on`` stay strings and dates are not converted, so the document is plain JSON."""
    data = load_spec_text("a: NO\nb: on\nc: true\nd: 2024-01-31\n")
    assert data == {"a": "NO", "b": "on", "c": True, "d": "2024-01-31"}


def test_yaml_aliases_are_expanded_into_copies_with_a_bound() -> None:
    """An alias reads as an independent copy; an alias bomb is refused."""
    data = load_spec_text("a: &x {k: 1}\nb: *x\n")
    assert data == {"a": {"k": 1}, "b": {"k": 1}}
    assert data["a"] is not data["b"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdef", "bcdefg", strict=True)
    )
    with pytest.raises(SpecError, match="more than"):
        load_spec_text(bomb)


def test_oversized_text_is_refused() -> None:
    """Text over the size cap is refused before it is parsed."""
    with pytest.raises(SpecError, match="larger than"):
        load_spec_text("a: " + "x" * (1 << 20))


# -- shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        (minimal(slug="Acme CRM"), "slug", "e.g. acme-crm"),
        (minimal(slug="a"), "slug", "2 to 63"),
        (minimal(version=3), "version", "allowed: slug, name, description"),
        (minimal(name=""), "name", "must not be empty"),
        ({"slug": "acme-crm", "name": "x"}, "operations", "'operations' is required"),
        (minimal(operations={}), "operations", "at least one operation"),
        (minimal(operations={"1st": {"method": "GET", "url": "u"}}), "operations.1st", "letter"),
        (with_operation(method="FETCH"), "operations.ping.method", "GET, POST, PUT"),
        (with_operation(method="get"), "operations.ping.method", "upper case"),
        (with_operation(timeoutMs=0), "operations.ping.timeoutMs", "from 1 to 30000"),
        (with_operation(timeoutMs=40000), "operations.ping.timeoutMs", "from 1 to 30000"),
        (with_operation(timeoutMs="3000"), "operations.ping.timeoutMs", "whole number"),
        (with_operation(retry={"attempts": 5}), "operations.ping.retry.attempts", "1 to 3"),
        (with_operation(retry={"attempts": 0}), "operations.ping.retry.attempts", "1 to 3"),
        (with_operation(retry={"tries": 2}), "operations.ping.retry.tries", "allowed: attempts"),
        (with_operation(query={"a": [1]}), "operations.ping.query.a", "string, number or bool"),
        (with_operation(headers={"A": 1}), "operations.ping.headers.A", "must be a string"),
        (with_operation(url=None), "operations.ping.url", "must be a string"),
        (with_operation(auth={"type": "magic"}), "operations.ping.auth.type", "oauth2Client"),
        (with_operation(auth={"token": "x"}), "operations.ping.auth.type", "needs a 'type'"),
        (
            with_operation(auth={"type": "bearer", "tokn": "x"}),
            "operations.ping.auth.tokn",
            "allowed: type, token",
        ),
        (
            with_operation(auth={"type": "header", "name": "X-Key"}),
            "operations.ping.auth.value",
            "'value' is required",
        ),
        (minimal(connection={"secrets": {"api key": {}}}), "connection.secrets.api key", "apiKey"),
        (minimal(connection={"allowedOrigins": "x"}), "connection.allowedOrigins", "a list"),
        (minimal(connection={"test": {}}), "connection.test.operation", "required"),
        (minimal(connection={"auth": "bearer"}), "connection.auth", "an object"),
    ],
)
def test_each_shape_problem_has_its_path_and_a_fix(data: Any, path: str, fragment: str) -> None:
    """Shape problems carry the dotted document path and say how to fix them."""
    found = [p.message for p in problems_of(data) if p.path == path]
    assert len(found) == 1
    assert fragment in found[0]


def test_all_shape_problems_are_reported_at_once() -> None:
    """Every shape problem is collected, and the message lists the first five."""
    data = minimal(slug="X", extra=1, operations={"ping": {"method": "FETCH", "timeoutMs": 0}})
    problems = problems_of(data)
    assert {p.path for p in problems} == {
        "slug",
        "extra",
        "operations.ping.method",
        "operations.ping.url",
        "operations.ping.timeoutMs",
    }
    with pytest.raises(SpecError) as caught:
        parse_spec_document(data)
    assert str(caught.value).startswith("the spec has 5 problems: slug: ")
    assert caught.value.field == "slug"


def test_the_message_names_five_problems_and_counts_the_rest() -> None:
    """Past five problems, the message says how many more there are."""
    error = SpecError([SpecProblem(f"p{i}", "bad") for i in range(7)])
    assert str(error).endswith("p4: bad; and 2 more")
    assert len(error.problems) == 7
    assert str(SpecError([SpecProblem("", "empty")])) == "the spec has 1 problem: empty"


def test_a_document_that_is_not_an_object_is_refused() -> None:
    """The root must be an object."""
    assert problems_of(["slug"])[0].path == ""


# -- canonical form, hash, diff --------------------------------------------------------------


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    """Canonical JSON is sorted, compact and keeps non-ASCII characters as they are."""
    assert (
        canonical_json({"b": 1, "a": {"d": "é", "c": [2, 1]}}) == '{"a":{"c":[2,1],"d":"é"},"b":1}'
    )


def test_content_hash_ignores_key_order_but_not_content() -> None:
    """Equal content hashes equal whatever the key order; any change changes the hash."""
    a = {"slug": "acme-crm", "name": "Acme", "operations": {"x": {"url": "u", "method": "GET"}}}
    b = {"operations": {"x": {"method": "GET", "url": "u"}}, "name": "Acme", "slug": "acme-crm"}
    assert content_hash(a) == content_hash(b)
    assert len(content_hash(a)) == 64
    assert content_hash(a) != content_hash({**a, "name": "Acme!"})
    assert content_hash({"n": 1}) != content_hash({"n": True})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@given(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=6), st.randoms())
def test_canonical_json_is_stable_under_key_permutation(doc: dict[str, Any], rng: Any) -> None:
    """Any reordering of object keys, at any depth, gives the same canonical JSON."""
    assert canonical_json(shuffled(doc, rng)) == canonical_json(doc)
    assert json.loads(canonical_json(doc)) == doc


def test_diff_reports_added_removed_and_changed_sorted_by_path() -> None:
    """Objects are compared key by key, lists whole, and entries come sorted by path."""
    before = {
        "name": "Acme",
        "operations": {
            "a": {"url": "https://x/1", "query": {"q": "1"}, "tags": [1, 2]},
            "gone": {"url": "u"},
        },
    }
    after = {
        "name": "Acme",
        "description": "new",
        "operations": {
            "a": {"url": "https://x/2", "query": {"q": "1", "r": "2"}, "tags": [2, 1]},
        },
    }
    assert diff_documents(before, after) == [
        {"path": "description", "change": "added", "before": None, "after": "new"},
        {"path": "operations.a.query.r", "change": "added", "before": None, "after": "2"},
        {"path": "operations.a.tags", "change": "changed", "before": [1, 2], "after": [2, 1]},
        {
            "path": "operations.a.url",
            "change": "changed",
            "before": "https://x/1",
            "after": "https://x/2",
        },
        {"path": "operations.gone", "change": "removed", "before": {"url": "u"}, "after": None},
    ]
    assert diff_documents(before, before) == []


def test_diff_tells_a_number_from_a_boolean() -> None:
    """``1`` and ``true`` are different values in a diff, as in the hash."""
    assert diff_documents({"a": 1}, {"a": True})[0]["change"] == "changed"
