"""JMESPath output mappings and transforms: compiled once when a spec or node is saved.

JMESPath runs no code and reads only the data it is given, which is why it (and not Python
expressions or templates) maps responses into vars. Unknown functions and wrong argument counts
are refused when compiling, not on a live call. Runtime errors name the expression and the types
involved, never a value from the response (which may hold personal data or a token).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

from callout.errors import InvalidError

__all__ = [
    "VAR_NAME",
    "Expression",
    "Mappings",
    "Transform",
    "compile_expression",
    "compile_mappings",
    "compile_transform",
]

#: A variable name a mapping may set.
VAR_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

#: Stateless between searches: one interpreter serves every expression.
_INTERPRETER: Final = TreeInterpreter()
_FUNCTIONS: Final[Mapping[str, Any]] = Functions.FUNCTION_TABLE
_JSON_TYPES: Final = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((n for t, n in _JSON_TYPES.items() if isinstance(value, t)), "a number")


def _field_chain(node: Any) -> tuple[str, ...] | None:
    """The keys of an expression that is only field names joined by dots (``a``, ``a.b.c``),
    else None."""
    if node.get("type") == "field":
        return (node["value"],)
    if node.get("type") == "subexpression":
        keys: list[str] = []
        for child in node["children"]:
            sub = _field_chain(child)
            if sub is None:
                return None
            keys += sub
        return tuple(keys)
    return None


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A compiled JMESPath expression; ``field`` says where it was written."""

    source: str
    field: str
    _parsed: ParsedResult
    #: For a plain field path (most mappings: ``id``, ``results.name``), its keys: read
    #: straight from dicts, as JMESPath would, without its tree walk.
    _keys: tuple[str, ...] | None = None

    def search(self, data: Any) -> Any:
        """The expression's value over ``data``; a path that is not there gives None."""
        keys = self._keys
        if keys is not None and type(data) is dict:
            value: Any = data
            for key in keys:
                if type(value) is not dict:
                    break
                value = value.get(key)
            else:
                return value
            if value is None:  # JMESPath: a field of null is null, and so is what follows
                return None
            # Any other non-object on the way: JMESPath's own rules (the interpreter below).
        try:
            return _INTERPRETER.visit(self._parsed.parsed, data)
        except jmespath_errors.JMESPathTypeError as exc:
            message = (
                f"{self.field}: expression {self.source!r} called {exc.function_name}() with "
                f"{exc.actual_type}, but it takes {' or '.join(exc.expected_types)}; guard it, "
                "e.g. with a filter or || default"
            )
        except jmespath_errors.JMESPathError as exc:
            message = f"{self.field}: expression {self.source!r} failed: {type(exc).__name__}"
        raise InvalidError(message, code="mapping_failed", field=self.field)


def compile_expression(source: object, *, field: str) -> Expression:
    """Compile one JMESPath expression; a bad one is ``InvalidError(code="bad_mapping")``."""
    if not isinstance(source, str):
        message = f"{field}: a mapping is a JMESPath expression written as a string"
        raise InvalidError(message, code="bad_mapping", field=field)
    try:
        parsed = jmespath.compile(source)
    except jmespath_errors.JMESPathError as exc:
        if isinstance(exc, jmespath_errors.EmptyExpressionError):
            why = "it is empty; write a path such as results[0].id"
        elif isinstance(exc, jmespath_errors.IncompleteExpressionError):
            why = "it ends too early (is a bracket, brace or quote left open?)"
        else:
            why = str(exc).splitlines()[0].removesuffix(":").removesuffix(", for expression")
        message = f"{field}: {source!r} is not a valid JMESPath expression: {why}"
        raise InvalidError(message, code="bad_mapping", field=field) from None
    _check_functions(parsed.parsed, source, field)
    return Expression(source, field, parsed, _field_chain(parsed.parsed))


def _check_functions(node: Any, source: str, field: str) -> None:
    """Unknown functions and wrong argument counts: JMESPath finds them only when searching."""
    if not isinstance(node, dict):
        return
    children = node.get("children", ())
    if node.get("type") == "function_expression":
        name = node.get("value")
        spec = _FUNCTIONS.get(name) if isinstance(name, str) else None
        if spec is None:
            message = (
                f"{field}: {source!r} calls {name}(), which is not a JMESPath function; see "
                "https://jmespath.org/specification.html#built-in-functions"
            )
            raise InvalidError(message, code="bad_mapping", field=field)
        signature = spec["signature"]
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        wanted = len(signature)
        if (len(children) < wanted) if variadic else (len(children) != wanted):
            more = " or more" if variadic else ""
            message = (
                f"{field}: {source!r} calls {name}() with {len(children)} argument(s); it takes "
                f"{wanted}{more}"
            )
            raise InvalidError(message, code="bad_mapping", field=field)
    for child in children:
        _check_functions(child, source, field)


@dataclass(frozen=True, slots=True)
class Mappings:
    """Var name -> expression pairs, applied in order over a parsed response."""

    pairs: tuple[tuple[str, Expression], ...] = ()
    #: ``(var, key)`` pairs when every expression is one field name (``id``): over a parsed
    #: JSON object each is ``data.get(key)``, exactly what ``Expression.search`` returns.
    _fields: tuple[tuple[str, str], ...] | None = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        fields = tuple(
            (name, expr._keys[0])
            for name, expr in self.pairs
            if expr._keys is not None and len(expr._keys) == 1
        )
        object.__setattr__(self, "_fields", fields if len(fields) == len(self.pairs) else None)

    def apply(self, data: Any) -> dict[str, Any]:
        """``{var: value}`` for every pair; a path missing from ``data`` gives None."""
        names: dict[str, Any] = {}
        self.apply_into(names, data)
        return names

    def apply_into(self, names: dict[str, Any], data: Any) -> None:
        """``names.update(self.apply(data))``, without the intermediate dict."""
        fields = self._fields
        if fields is not None and type(data) is dict:
            for name, key in fields:
                names[name] = data.get(key)
            return
        for name, expr in self.pairs:
            names[name] = expr.search(data)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def sources(self) -> dict[str, str]:
        """The mappings as written: ``{var: expression}``."""
        return {name: expr.source for name, expr in self.pairs}


@dataclass(frozen=True, slots=True)
class Transform:
    """One expression that builds an object from the response, merged into vars."""

    expression: Expression

    @property
    def source(self) -> str:
        return self.expression.source

    def apply(self, data: Any) -> dict[str, Any]:
        """The object the expression builds; anything else is ``transform_not_object``."""
        result = self.expression.search(data)
        if not isinstance(result, dict):
            field = self.expression.field
            message = (
                f"{field}: transform {self.source!r} gave {_json_type(result)}, not an object; "
                "write it as a multiselect hash such as {vip: tier == 'gold'}"
            )
            raise InvalidError(message, code="transform_not_object", field=field)
        return result


def compile_mappings(raw: Mapping[Any, Any], *, field: str) -> Mappings:
    """Compile ``{var: expression}``; errors name ``<field>.<var>``."""
    pairs = []
    for name, source in raw.items():
        where = f"{field}.{name}"
        if not isinstance(name, str) or VAR_NAME.fullmatch(name) is None:
            message = (
                f"{where}: {name!r} is not a variable name; start with a letter or '_', then up "
                "to 127 letters, digits or '_'"
            )
            raise InvalidError(message, code="bad_mapping", field=where)
        pairs.append((name, compile_expression(source, field=where)))
    return Mappings(tuple(pairs))


def compile_transform(source: object, *, field: str) -> Transform:
    """Compile a transform (one JMESPath expression producing an object)."""
    return Transform(compile_expression(source, field=field))
