"""Tests for case evaluation: every op, type mismatches, missing paths and compile errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callout.cases import OPS, Case, case_matches, compile_cases, first_match
from callout.errors import FlowValidationError, Outcome

SCOPE: dict[str, Any] = {
    "vars": {
        "tier": "gold",
        "count": 42,
        "price": 9.5,
        "flag": True,
        "zero": 0,
        "nothing": None,
        "numeric": "42",
        "tags": ["vip", "new", 1],
        "profile": {"name": "Ada", "plan": {"level": 3}},
        "items": [{"id": "a1"}, {"id": "b2"}],
        "empty": "",
        "event": "shadowed by the top-level event scope",
    },
    "event": {"from": "+15551234", "to": "+15550000"},
    "contact": {"id": "c-1"},
    "config": {"region": "eu"},
    "status": 404,
    "outcome": "4xx",
}


def case(path: str, op: str, value: Any = None) -> Case:
    raw: dict[str, Any] = {"path": path, "op": op, "nodeId": "target"}
    if op not in ("exists", "notExists"):
        raw["value"] = value
    (compiled,) = compile_cases([raw])
    return compiled


OP_TABLE: list[tuple[str, str, Any, bool]] = [
    # eq / ne: JSON equality, no bool/number confusion, no string/number coercion
    ("vars.tier", "eq", "gold", True),
    ("vars.tier", "eq", "silver", False),
    ("vars.count", "eq", 42, True),
    ("vars.count", "eq", 42.0, True),
    ("vars.count", "eq", "42", False),
    ("vars.flag", "eq", "true", False),
    ("vars.nothing", "eq", "null", False),
    ("vars.flag", "eq", True, True),
    ("vars.flag", "eq", 1, False),
    ("vars.zero", "eq", False, False),
    ("vars.nothing", "eq", None, True),
    ("vars.profile", "eq", {"name": "Ada", "plan": {"level": 3}}, True),
    ("vars.profile", "eq", {"name": "Ada"}, False),
    ("vars.tags", "eq", ["vip", "new", 1], True),
    ("vars.tags", "eq", ["vip", "new", True], False),
    ("vars.tier", "ne", "silver", True),
    ("vars.tier", "ne", "gold", False),
    ("vars.flag", "ne", 1, True),
    # in / notIn
    ("outcome", "in", ["4xx", "5xx"], True),
    ("outcome", "in", ["timeout", "network"], False),
    ("vars.flag", "in", [1, 2], False),
    ("vars.count", "in", [41, 42], True),
    ("outcome", "notIn", ["2xx", "3xx"], True),
    ("outcome", "notIn", ["4xx"], False),
    # gt / gte / lt / lte
    ("status", "gte", 400, True),
    ("status", "lt", 500, True),
    ("status", "gt", 404, False),
    ("status", "lte", 404, True),
    ("vars.price", "gt", 9, True),
    ("vars.numeric", "gt", 41, True),
    ("vars.numeric", "lt", 41.5, False),
    ("vars.count", "gt", "41", True),
    ("vars.tier", "gt", "apple", True),
    ("vars.tier", "lt", "apple", False),
    ("vars.numeric", "gt", "5", False),
    # contains
    ("event.from", "contains", "555", True),
    ("event.from", "contains", "999", False),
    ("vars.tags", "contains", "vip", True),
    ("vars.tags", "contains", 1, True),
    ("vars.tags", "contains", True, False),
    ("vars.profile", "contains", "name", True),
    ("vars.profile", "contains", "Ada", False),
    # startsWith / endsWith
    ("event.from", "startsWith", "+1555", True),
    ("event.from", "startsWith", "+44", False),
    ("event.from", "endsWith", "1234", True),
    ("event.from", "endsWith", "0000", False),
    # exists / notExists
    ("vars.tier", "exists", None, True),
    ("vars.empty", "exists", None, True),
    ("vars.nothing", "exists", None, False),
    ("vars.absent", "exists", None, False),
    ("vars.tier", "notExists", None, False),
    ("vars.nothing", "notExists", None, True),
    ("vars.absent", "notExists", None, True),
    # matches: searched, not full-matched; numbers match as their JSON text
    ("event.from", "matches", r"^\+1\d{7}$", True),
    ("event.from", "matches", "555", True),
    ("event.from", "matches", r"^\+44", False),
    ("status", "matches", "^4", True),
    ("status", "matches", "^5", False),
]


@pytest.mark.parametrize(("path", "op", "value", "expected"), OP_TABLE)
def test_ops(path: str, op: str, value: Any, expected: bool) -> None:
    """Each op is true and false where documented."""
    assert case_matches(case(path, op, value), SCOPE) is expected


def test_every_op_is_covered() -> None:
    """The op table above exercises every op in ``OPS``."""
    assert {op for _, op, _, _ in OP_TABLE} == OPS


@pytest.mark.parametrize(
    ("path", "op", "value"),
    [
        ("vars.tier", "gt", 5),
        ("vars.count", "gt", "abc"),
        ("vars.flag", "gt", 0),
        ("vars.profile", "lt", 3),
        ("vars.tags", "gte", "a"),
        ("vars.nothing", "lte", 1),
        ("vars.count", "contains", "4"),
        ("vars.profile", "contains", 3),
        ("vars.count", "startsWith", "4"),
        ("vars.tags", "endsWith", "new"),
        ("vars.profile", "matches", "Ada"),
        ("vars.flag", "matches", "true"),
        ("vars.nothing", "matches", ".*"),
        ("vars.tier", "eq", ["gold"]),
        ("vars.tier", "in", [["gold"], {"gold": 1}]),
    ],
)
def test_type_mismatches_are_false(path: str, op: str, value: Any) -> None:
    """Comparing values of unrelated types is false, never an exception."""
    assert case_matches(case(path, op, value), SCOPE) is False


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "x", False),
        ("ne", "x", True),
        ("in", ["x"], False),
        ("notIn", ["x"], True),
        ("gt", 1, False),
        ("gte", 1, False),
        ("lt", 1, False),
        ("lte", 1, False),
        ("contains", "x", False),
        ("startsWith", "x", False),
        ("endsWith", "x", False),
        ("exists", None, False),
        ("notExists", None, True),
        ("matches", ".*", False),
    ],
)
def test_missing_path(op: str, value: Any, expected: bool) -> None:
    """On a missing path only the negations (ne, notIn, notExists) are true."""
    for path in ("vars.absent", "vars.profile.absent.deeper", "vars.items[9].id", "absent"):
        assert case_matches(case(path, op, value), SCOPE) is expected


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tier", "gold"),
        ("profile.plan.level", 3),
        ("items[1].id", "b2"),
        ("items.0.id", "a1"),
        ("event.from", "+15551234"),
        ("contact.id", "c-1"),
        ("config.region", "eu"),
        ("status", 404),
        ("outcome", "4xx"),
    ],
)
def test_paths(path: str, value: Any) -> None:
    """Top-level keys of the scope win; any other first segment is read under ``vars``."""
    assert case_matches(case(path, "eq", value), SCOPE)


def test_str_enum_equals_its_value() -> None:
    """An ``Outcome`` (a ``StrEnum``) in the scope equals its string value."""
    scope = {"vars": {}, "outcome": Outcome.S5XX}
    assert case_matches(case("outcome", "eq", "5xx"), scope)
    assert case_matches(case("outcome", "in", ["4xx", "5xx"]), scope)


def test_status_and_outcome_are_bare_vars_without_call_result() -> None:
    """Without top-level ``status``/``outcome`` keys those names are read under ``vars``."""
    scope = {"vars": {"status": "open", "outcome": "won"}}
    assert case_matches(case("status", "eq", "open"), scope)
    assert case_matches(case("outcome", "eq", "won"), scope)


def test_catastrophic_regex_returns_false() -> None:
    """A catastrophically backtracking pattern is no match instead of a hang."""
    scope = {"vars": {"s": "a" * 30 + "b", "t": "a" * 40 + "b"}}
    assert case_matches(case("s", "matches", "(a+)+$"), scope) is False
    assert case_matches(case("t", "matches", "(a|aa)+$"), scope) is False


def test_overlong_regex_input_is_no_match() -> None:
    """A string longer than the input cap does not match."""
    scope = {"vars": {"s": "x" * 100_000}}
    assert case_matches(case("s", "matches", "x"), scope) is False


def test_first_match_takes_first_in_order() -> None:
    """Cases are tried in order and the first that holds wins; no match is ``None``."""
    cases = compile_cases(
        [
            {"path": "outcome", "op": "eq", "value": "2xx", "nodeId": "greet"},
            {"path": "status", "op": "gte", "value": 400, "nodeId": "client"},
            {"path": "outcome", "op": "eq", "value": "4xx", "nodeId": "later"},
        ]
    )
    matched = first_match(cases, SCOPE)
    assert matched is not None
    assert matched.node_id == "client"
    assert first_match(cases, {"vars": {}, "status": 200, "outcome": "3xx"}) is None
    assert first_match((), SCOPE) is None


def test_compile_shape() -> None:
    """A compiled case keeps path, op, value and node id; ``None`` means no cases."""
    (compiled,) = compile_cases(
        [{"path": "vars.x", "op": "in", "value": [1], "nodeId": "n", "_label": "note"}]
    )
    assert compiled == Case("vars.x", "in", [1], "n")
    assert compile_cases(None) == ()
    assert compile_cases([]) == ()


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"cases": 1}, "cases", "list"),
        ([1], "cases[0]", "object"),
        ([{"path": "x", "op": "equals", "value": 1, "nodeId": "n"}], "cases[0].op", "valid ops"),
        ([{"path": "x", "value": 1, "nodeId": "n"}], "cases[0].op", "notExists"),
        ([{"path": "x", "op": "in", "value": "a", "nodeId": "n"}], "cases[0].value", "list"),
        ([{"path": "x", "op": "notIn", "value": 3, "nodeId": "n"}], "cases[0].value", "list"),
        ([{"path": "x", "op": "gt", "value": True, "nodeId": "n"}], "cases[0].value", "number"),
        ([{"path": "x", "op": "lte", "value": [1], "nodeId": "n"}], "cases[0].value", "number"),
        (
            [{"path": "x", "op": "startsWith", "value": 1, "nodeId": "n"}],
            "cases[0].value",
            "string",
        ),
        (
            [{"path": "x", "op": "matches", "value": "(", "nodeId": "n"}],
            "cases[0].value",
            "regular",
        ),
        ([{"path": "x", "op": "matches", "value": 5, "nodeId": "n"}], "cases[0].value", "regular"),
        ([{"path": "x", "op": "eq", "nodeId": "n"}], "cases[0].value", "needs a value"),
        ([{"path": "", "op": "eq", "value": 1, "nodeId": "n"}], "cases[0].path", "path"),
        ([{"path": "a..b", "op": "eq", "value": 1, "nodeId": "n"}], "cases[0].path", "path"),
        ([{"path": "x", "op": "eq", "value": 1}], "cases[0].nodeId", "node"),
        ([{"path": "x", "op": "eq", "value": 1, "nodeId": ""}], "cases[0].nodeId", "node"),
        ([{"variable": "x", "op": "eq", "value": 1, "nodeId": "n"}], "cases[0]", "unknown"),
    ],
)
def test_compile_errors_name_the_field(raw: Any, field: str, fragment: str) -> None:
    """Each malformed case is a ``FlowValidationError`` naming the field and what is wrong."""
    with pytest.raises(FlowValidationError) as info:
        compile_cases(raw if isinstance(raw, list) else raw["cases"])
    assert info.value.field == field
    assert fragment in info.value.message


def test_compile_error_uses_given_field_prefix() -> None:
    """Errors are prefixed with the ``field`` the caller passes, e.g. the node's config path."""
    cases = [
        {"path": "x", "op": "eq", "value": 1, "nodeId": "n"},
        {"path": "x", "op": "nope", "value": 1, "nodeId": "n"},
    ]
    with pytest.raises(FlowValidationError) as info:
        compile_cases(cases, field="nodes[3].config.cases")
    assert info.value.field == "nodes[3].config.cases[1].op"
    assert info.value.message.startswith("nodes[3].config.cases[1].op: ")
    assert "eq, exists" in info.value.message


NAMES = st.sampled_from(["outcome", "status", "tier", "vars", "x-y", "é"])
VALUES = st.none() | st.booleans() | st.integers(-2, 600) | st.sampled_from(["2xx", "gold", ""])


@settings(max_examples=300, deadline=None)
@given(
    name=NAMES,
    op=st.sampled_from(sorted(OPS)),
    expected=VALUES,
    top=st.dictionaries(NAMES, VALUES, max_size=3),
    vars_=st.none() | st.dictionaries(NAMES, VALUES, max_size=3),
)
def test_property_a_one_name_path_decides_as_the_general_lookup(
    name: str, op: str, expected: Any, top: dict[str, Any], vars_: Any
) -> None:
    """A case on one name (``outcome``, ``status``) is read without parsing its path; it
    decides exactly as the general lookup does: a scope's value first, else the var, else
    missing (which only the negated ops accept)."""
    scope = {**top, "vars": vars_} if vars_ is not None else dict(top)
    try:
        fast, general = case(name, op, expected), case(name, op, expected)
    except FlowValidationError:
        assume(False)  # a value the op refuses when the flow is loaded
    object.__setattr__(general, "_key", None)  # the general path: lookup() of the path
    assert fast._key == name
    assert case_matches(fast, scope) == case_matches(general, scope)
