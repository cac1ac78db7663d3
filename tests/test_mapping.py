"""JMESPath output mappings and transforms, compiled once."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callout.errors import InvalidError
from callout.mapping import Mappings, compile_expression, compile_mappings, compile_transform

RESPONSE = {
    "results": [{"id": "c_1", "name": "Ada", "tier": "gold", "phones": ["+1555", "+1666"]}],
    "total": 1,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("results[0].id", "c_1"),
        ("results[0].phones[-1]", "+1666"),
        ("length(results)", 1),
        ("results[?tier=='gold'].name | [0]", "Ada"),
        ("total", 1),
        ("results[0].missing", None),
        ("nothing.at.all", None),
        ("results[5].id", None),
    ],
)
def test_a_mapping_reads_its_path_and_a_missing_path_gives_none(
    expression: str, expected: Any
) -> None:
    """Each mapping is its expression's value; a path that is not there is None, not an error."""
    mappings = compile_mappings({"out": expression}, field="outputMappings")
    assert mappings.apply(RESPONSE) == {"out": expected}


def test_mappings_apply_in_order_over_any_response() -> None:
    """All pairs are applied; non-object responses (text, null) give None for paths."""
    mappings = compile_mappings({"contactId": "results[0].id", "n": "total"}, field="m")
    assert mappings.apply(RESPONSE) == {"contactId": "c_1", "n": 1}
    assert mappings.apply("plain text") == {"contactId": None, "n": None}
    assert mappings.apply(None) == {"contactId": None, "n": None}
    assert len(mappings) == 2
    assert mappings.sources == {"contactId": "results[0].id", "n": "total"}
    assert Mappings().apply(RESPONSE) == {}


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"contactId": "results[0"}, "m.contactId", "ends too early"),
        ({"contactId": ""}, "m.contactId", "it is empty"),
        ({"contactId": "foo bar"}, "m.contactId", "Unexpected token"),
        ({"contactId": "nope(results)"}, "m.contactId", "not a JMESPath function"),
        ({"contactId": "length(a, b)"}, "m.contactId", "takes 1"),
        ({"contactId": "merge()"}, "m.contactId", "1 or more"),
        ({"contactId": 42}, "m.contactId", "written as a string"),
        ({"contact id": "a"}, "m.contact id", "not a variable name"),
        ({"9lives": "a"}, "m.9lives", "not a variable name"),
    ],
)
def test_a_bad_mapping_names_its_field(raw: Any, field: str, fragment: str) -> None:
    """Syntax errors, unknown functions, wrong arity and bad names fail at compile time."""
    with pytest.raises(InvalidError) as caught:
        compile_mappings(raw, field="m")
    assert caught.value.code == "bad_mapping"
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.message.startswith(f"{field}: ")


def test_a_type_error_at_run_time_names_types_never_the_value() -> None:
    """A function given the wrong type fails naming the expression and types, not the data."""
    mappings = compile_mappings({"n": "length(token)"}, field="m")
    with pytest.raises(InvalidError) as caught:
        mappings.apply({"token": 123456789})
    assert caught.value.code == "mapping_failed"
    assert caught.value.field == "m.n"
    assert "length(token)" in caught.value.message
    assert "number" in caught.value.message
    assert "123456789" not in caught.value.message


def test_a_transform_builds_an_object() -> None:
    """A transform's object is returned as the vars to merge."""
    transform = compile_transform("{vip: results[0].tier == 'gold', n: total}", field="t")
    assert transform.apply(RESPONSE) == {"vip": True, "n": 1}
    assert transform.source == "{vip: results[0].tier == 'gold', n: total}"


@pytest.mark.parametrize(
    ("source", "kind"),
    [("results", "a list"), ("total", "a number"), ("missing", "null"), ("'x'", "a string")],
)
def test_a_transform_that_is_not_an_object_raises(source: str, kind: str) -> None:
    """A transform producing anything but an object is ``transform_not_object``."""
    transform = compile_transform(source, field="operations.x.transform")
    with pytest.raises(InvalidError) as caught:
        transform.apply(RESPONSE)
    assert caught.value.code == "transform_not_object"
    assert caught.value.field == "operations.x.transform"
    assert f"gave {kind}," in caught.value.message
    assert repr(source) in caught.value.message


def test_a_bad_transform_names_its_field() -> None:
    """A transform that does not parse is ``bad_mapping`` at its field."""
    with pytest.raises(InvalidError) as caught:
        compile_transform("{vip: ", field="operations.x.transform")
    assert (caught.value.code, caught.value.field) == ("bad_mapping", "operations.x.transform")


def test_an_expression_is_compiled_once_and_reused() -> None:
    """A compiled expression searches many documents without recompiling."""
    expression = compile_expression("a.b", field="f")
    assert [expression.search({"a": {"b": i}}) for i in range(3)] == [0, 1, 2]


KEYS = st.sampled_from(["a", "b", "id", "_x"])
JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=JSON_DATA, keys=st.lists(KEYS, min_size=1, max_size=4))
def test_property_a_plain_field_path_reads_what_jmespath_reads(data: Any, keys: list[str]) -> None:
    """Field paths (``a``, ``a.b.id``) are read straight from the data, without JMESPath's tree
    walk: the value is jmespath's own for any JSON data (lists, text and nulls on the way)."""
    source = ".".join(keys)
    assert compile_expression(source, field="m").search(data) == jmespath.search(source, data)


@settings(max_examples=300, deadline=None)
@given(data=JSON_DATA, names=st.lists(KEYS, min_size=1, max_size=4))
def test_property_mappings_of_single_fields_give_what_jmespath_gives(
    data: Any, names: list[str]
) -> None:
    """Mappings that are each one field name (``crmId: id``) are read straight from a parsed
    object: the vars are jmespath's own values, in order, for any JSON data; a name mapped
    twice takes the later expression, as a dict update would."""
    pairs = [(f"v{i % 3}", key) for i, key in enumerate(names)]
    mappings = Mappings(tuple((var, compile_expression(key, field=var)) for var, key in pairs))
    expected: dict[str, Any] = {}
    for var, key in pairs:
        expected[var] = jmespath.search(key, data)
    assert list(mappings.apply(data).items()) == list(expected.items())
