"""Case evaluation: ``{path, op, value, nodeId}`` checked in order, the first match wins (SPEC §1).

Paths: the first segment names a top-level key of the scope when there is one (``vars``,
``event``, ``contact``, ``config``, and on ``apiCall`` nodes ``status`` and ``outcome``);
otherwise the whole path is read under ``vars`` (``customer.tier`` means ``vars.customer.tier``).
Paths are resolved by ``callout.template.lookup``, the project's one path resolver.

Semantics (never an exception at run time, whatever the types):

- ``eq``/``ne``: JSON equality; ``1 == 1.0``, but a boolean never equals a number and ``"42"``
  never equals ``42``. ``ne`` is exactly ``not eq``.
- ``in``/``notIn``: ``eq`` against any element of the case's list; ``notIn`` is ``not in``.
- ``gt``/``gte``/``lt``/``lte``: numbers compare as numbers (booleans are not numbers); a numeric
  string such as ``"42"`` compares as a number when the other side is a number; two strings
  compare lexicographically (by code point); anything else is false.
- ``contains``: substring when both are strings, element (by ``eq``) of a list, key of an object.
- ``startsWith``/``endsWith``: strings only.
- ``exists``: present and not null; ``notExists`` is its negation.
- ``matches``: a regular expression *searched* (not full-matched) in a string (a number is
  matched as its JSON text), with a time limit of ``MATCH_TIMEOUT`` seconds and inputs capped at
  ``MATCH_MAX_INPUT`` characters; a timeout or an over-long input is no match.
- A missing path: ``ne``, ``notIn`` and ``notExists`` (the negations) are true; all others false.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs shipped; used narrowly

from callout.errors import FlowValidationError, TemplateError
from callout.template import Scope, is_single_name, lookup

__all__ = [
    "MATCH_MAX_INPUT",
    "MATCH_TIMEOUT",
    "OPS",
    "Case",
    "case_matches",
    "compile_cases",
    "first_match",
]

OPS: Final = frozenset(
    {
        "eq", "ne", "in", "notIn", "gt", "gte", "lt", "lte", "contains",
        "startsWith", "endsWith", "exists", "notExists", "matches",
    }
)  # fmt: skip
#: Seconds a ``matches`` search may take before it counts as no match.
MATCH_TIMEOUT: Final = 0.05
#: Longest string (in characters) a ``matches`` case will search; longer is no match.
MATCH_MAX_INPUT: Final = 65_536

_NEGATIONS: Final = {"ne": "eq", "notIn": "in", "notExists": "exists"}
_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ORDERED: Final = frozenset(_COMPARE)
_NO_VALUE: Final = frozenset({"exists", "notExists"})
_KEYS: Final = frozenset({"path", "op", "value", "nodeId"})
_INTEGER: Final = re.compile(r"-?\d{1,300}")
_DECIMAL: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


@lru_cache(maxsize=1024)
def _pattern(source: str) -> Any:
    """The compiled ``regex`` pattern, or ``None`` when it does not compile."""
    try:
        return regex.compile(source)
    except (regex.error, TypeError, ValueError, OverflowError):
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One compiled case: when the value at ``path`` satisfies ``op`` against ``value``, the
    run goes to ``node_id``."""

    path: str
    op: str
    value: Any
    node_id: str
    _test: Callable[[Any], bool] = dataclasses.field(init=False, repr=False, compare=False)
    #: The path's first name: a scope, else the path is read from vars.
    _head: str = dataclasses.field(init=False, repr=False, compare=False)
    #: The path when it is that one name (``outcome``, ``status``): read without parsing.
    _key: str | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _tester(self.op, self.value))
        object.__setattr__(self, "_head", self.path.split(".", 1)[0].split("[", 1)[0])
        object.__setattr__(self, "_key", self.path if is_single_name(self.path) else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: no bool/number confusion, containers compared deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def _as_number(value: Any) -> float | None:
    """A number, or a string spelling a JSON number (ints kept exact), else ``None``."""
    if _is_number(value):
        return value  # type: ignore[no-any-return]  # checked: an int or a float
    if isinstance(value, str):
        if _INTEGER.fullmatch(value):
            return int(value)
        if _DECIMAL.fullmatch(value):
            return float(value)
    return None


def _order(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    """The two sides as comparable numbers or strings, or ``None`` when they do not compare."""
    if isinstance(actual, str) and isinstance(expected, str):
        return actual, expected
    if _is_number(actual) or _is_number(expected):
        a, b = _as_number(actual), _as_number(expected)
        if a is not None and b is not None and a == a and b == b:  # noqa: PLR0124 -- NaN test
            return a, b
    return None


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list | tuple):
        return any(_equal(item, expected) for item in actual)
    if isinstance(actual, Mapping):
        return isinstance(expected, str) and expected in actual
    return False


def _search(actual: Any, pattern: Any) -> bool:
    if _is_number(actual):
        actual = json.dumps(actual)
    if pattern is None or not isinstance(actual, str) or len(actual) > MATCH_MAX_INPUT:
        return False
    try:
        return pattern.search(actual, timeout=MATCH_TIMEOUT) is not None
    except TimeoutError:
        return False


def _tester(op: str, expected: Any) -> Callable[[Any], bool]:
    """The test for a present value; negated ops are built from their positive twin."""
    if op in _NEGATIONS:
        positive = _tester(_NEGATIONS[op], expected)
        return lambda actual: not positive(actual)
    if op == "eq":
        if type(expected) is str:  # the usual case (an outcome class, a status text): inlined
            return lambda actual: isinstance(actual, str) and actual == expected
        return lambda actual: _equal(actual, expected)
    if op == "in":
        options = tuple(expected) if isinstance(expected, list | tuple) else ()
        return lambda actual: any(_equal(actual, option) for option in options)
    if op in _ORDERED:
        compare = _COMPARE[op]
        return lambda actual: (pair := _order(actual, expected)) is not None and compare(*pair)
    if op == "contains":
        return lambda actual: _contains(actual, expected)
    if op == "startsWith":
        ok = isinstance(expected, str)
        return lambda actual: ok and isinstance(actual, str) and actual.startswith(expected)
    if op == "endsWith":
        ok = isinstance(expected, str)
        return lambda actual: ok and isinstance(actual, str) and actual.endswith(expected)
    if op == "exists":
        return lambda actual: actual is not None
    if op == "matches":
        pattern = _pattern(expected) if isinstance(expected, str) else None
        return lambda actual: _search(actual, pattern)
    return lambda actual: False


def _resolve(case: Case, scope: Scope) -> tuple[bool, Any]:
    head = case._head
    try:
        if head in scope:
            return lookup(scope, case.path)
        vars_ = scope.get("vars")
        return lookup(vars_, case.path) if isinstance(vars_, Mapping) else (False, None)
    except TemplateError:
        return False, None


def case_matches(case: Case, scope: Scope) -> bool:
    """Whether ``case`` holds for ``scope``; never raises, whatever the types involved."""
    key = case._key
    if key is not None:  # lookup() of one name, inlined: a scope's, else a var's
        if key in scope:
            return case._test(scope[key])
        vars_ = scope.get("vars")
        if isinstance(vars_, Mapping) and key in vars_:
            return case._test(vars_[key])
        return case.op in _NEGATIONS
    found, actual = _resolve(case, scope)
    if not found:
        return case.op in _NEGATIONS
    return case._test(actual)


def first_match(cases: Sequence[Case], scope: Scope) -> Case | None:
    """The first case that holds, or ``None`` (the run then follows ``on.__next``)."""
    for case in cases:
        if case_matches(case, scope):
            return case
    return None


# -- compiling -------------------------------------------------------------------------------


def _problem(where: str, message: str) -> FlowValidationError:
    return FlowValidationError(f"{where}: {message}", field=where)


def _check_value(op: str, value: Any, where: str) -> None:
    if op in ("in", "notIn") and not isinstance(value, list):
        raise _problem(where, f'\'{op}\' needs a list value, e.g. ["2xx", "3xx"]')
    if op in _ORDERED and not (_is_number(value) or isinstance(value, str)):
        raise _problem(where, f"'{op}' needs a number or a string value")
    if op in ("startsWith", "endsWith") and not isinstance(value, str):
        raise _problem(where, f"'{op}' needs a string value")
    if op == "matches":
        if not isinstance(value, str):
            raise _problem(where, "'matches' needs a regular expression as a string")
        try:
            regex.compile(value)
        except (regex.error, ValueError, OverflowError) as exc:
            raise _problem(where, f"invalid regular expression: {exc}") from None


def _compile_case(raw: Any, where: str) -> Case:
    if not isinstance(raw, Mapping):
        raise _problem(where, "a case is an object {path, op, value, nodeId}")
    unknown = sorted(str(k) for k in raw if k not in _KEYS and not str(k).startswith("_"))
    if unknown:
        raise _problem(where, f"unknown key(s) {unknown}; a case has path, op, value and nodeId")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise _problem(f"{where}.path", "needs a path such as vars.tier, event.from or outcome")
    try:
        lookup({}, path)
    except TemplateError as exc:
        raise _problem(f"{where}.path", exc.message) from None
    op = raw.get("op")
    if op not in OPS:
        raise _problem(f"{where}.op", f"unknown op {op!r}; valid ops: {', '.join(sorted(OPS))}")
    if op not in _NO_VALUE:
        if "value" not in raw:
            raise _problem(f"{where}.value", f"'{op}' needs a value to compare with")
        _check_value(op, raw["value"], f"{where}.value")
    node_id = raw.get("nodeId")
    if not isinstance(node_id, str) or not node_id:
        raise _problem(f"{where}.nodeId", "needs the id of the node to go to when this matches")
    return Case(path, op, raw.get("value"), node_id)


def compile_cases(raw: Any, *, field: str = "cases") -> tuple[Case, ...]:
    """Validate and compile a node's ``cases`` (``None`` means none); errors name the case."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _problem(field, "cases are a list of {path, op, value, nodeId} objects")
    return tuple(_compile_case(item, f"{field}[{i}]") for i, item in enumerate(raw))
