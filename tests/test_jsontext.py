"""The history's JSON encoders write exactly what json.dumps writes, and refuse what it refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callout._jsontext import dumps, dumps_compact, dumps_unicode, scalar

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
KEYS = st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children),
        st.dictionaries(KEYS, children, max_size=4),
    ),
    max_leaves=20,
)


def result(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return ("text", encode(value))
    except (TypeError, ValueError) as exc:
        return ("raises", type(exc).__name__)


@settings(max_examples=300, deadline=None)
@given(value=DATA)
def test_property_the_encoders_match_json_dumps(value: Any) -> None:
    """For any data (NaN and infinities included): dumps is json.dumps(allow_nan=False),
    dumps_unicode is json.dumps(ensure_ascii=False), dumps_compact is that with compact
    separators (request bodies), scalar is dumps: same text or same error."""
    strict = result(lambda v: json.dumps(v, allow_nan=False), value)
    assert result(dumps, value) == strict
    assert result(scalar, value) == strict
    assert result(dumps_unicode, value) == result(
        lambda v: json.dumps(v, ensure_ascii=False), value
    )
    assert result(dumps_compact, value) == result(
        lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")), value
    )


@pytest.mark.parametrize(
    "value", [object(), b"bytes", {1, 2}, {(1, 2): "tuple key"}, math.nan, [math.inf]]
)
def test_values_json_refuses_are_refused_alike(value: Any) -> None:
    """What json.dumps refuses in strict mode, dumps refuses with the same error class."""
    assert result(dumps, value) == result(lambda v: json.dumps(v, allow_nan=False), value)
    assert result(dumps, value)[0] == "raises"


def test_a_cycle_raises_recursion_error() -> None:
    """No cycle check (that is where the time goes): a cycle ends in RecursionError."""
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(RecursionError):
        dumps(cyclic)
