"""What is wrong with an integration spec: problems with exact paths, gathered into one error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from callout.errors import InvalidError

__all__ = ["SpecError", "SpecProblem", "join_path"]

#: Problems spelled out in a ``SpecError``'s message; ``problems`` holds all of them.
_SHOWN = 5


class SpecProblem(NamedTuple):
    """One problem: where (``operations.lookupContact.query.phone``, ``""`` for the root) and
    a message that says what is wrong and how to fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(InvalidError):
    """A spec was refused; ``problems`` lists every problem found, in document order."""

    code = "spec_invalid"

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        shown = "; ".join(str(p) for p in self.problems[:_SHOWN])
        more = f"; and {count - _SHOWN} more" if count > _SHOWN else ""
        noun = "problem" if count == 1 else "problems"
        first = self.problems[0].path if self.problems else ""
        super().__init__(f"the spec has {count} {noun}: {shown}{more}", field=first or None)


def join_path(base: str, key: str | int) -> str:
    """``base`` extended by a key (``a.b``) or a list index (``a[0]``)."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key
