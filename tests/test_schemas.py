"""Tests for compiled JSON Schema validators: the shortcut for plain typed-object schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callout._schemas import _shortcut, compile_validator
from callout.errors import InvalidError

TYPES = ["string", "integer", "number", "boolean", "null", "object", "array"]
NAMES = st.sampled_from(["from", "i", "name", "x"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(NAMES, inner, max_size=2),
    max_leaves=4,
)


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, Any]:
    properties = draw(
        st.dictionaries(
            NAMES,
            st.fixed_dictionaries(
                {"type": st.sampled_from(TYPES)},
                optional={"minLength": st.integers(0, 2), "description": st.just("d")},
            ),
            max_size=3,
        )
    )
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties:
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


def validate(schema: dict[str, Any], data: Any) -> bool:
    check = compile_validator(schema, root="inputs", code="input_invalid", what="the schema")
    try:
        check(data)
    except InvalidError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(schema=schemas(), data=st.dictionaries(NAMES, VALUES, max_size=4) | VALUES)
def test_property_the_shortcut_accepts_only_what_the_schema_accepts(
    schema: dict[str, Any], data: Any
) -> None:
    """A plain schema (an object of typed properties, some required) is checked by one
    expression first; whatever it accepts, JSON Schema itself accepts, and the validator's
    verdict is JSON Schema's either way."""
    expected = jsonschema.Draft7Validator(schema).is_valid(data)
    accepts = _shortcut(schema)
    if accepts is not None and accepts(data):
        assert expected
    assert validate(schema, data) == expected


def test_the_shortcut_is_only_for_schemas_that_say_nothing_more() -> None:
    """A keyword beyond types and required (a length, closed properties) leaves the full
    check to decide, with its message naming the field."""
    typed = {"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]}
    assert _shortcut(typed) is not None
    assert _shortcut({**typed, "additionalProperties": False}) is None
    longer = {"type": "object", "properties": {"n": {"type": "string", "minLength": 2}}}
    assert _shortcut(longer) is None
    check = compile_validator(longer, root="inputs", code="input_invalid", what="inputSchema")
    with pytest.raises(InvalidError) as info:
        check({"n": "a"})
    assert info.value.field == "inputs.n"
