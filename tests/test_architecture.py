"""The shape of the package: import direction between layers, and the public surface."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import callout

SRC = Path(callout.__file__).parent

# DESIGN.md: spec < template/mapping/cases/guard/crypto/scrub < transport < engine < store
# < service < api/web/cli. A module may import its own layer or any layer below it.
LAYERS: list[tuple[int, str]] = [
    (0, r"errors|spec(\..*)?"),
    (1, r"template|mapping|cases|guard|_guard_ranges|_guard_syntax|crypto|scrub|_jsontext|logs"),
    (2, r"transport|_hop|_body|_http_errors|_redirects|integration|_integration_check|_schemas"),
    (3, r"engine(\..*)?"),
    (4, r"store(\..*)?"),
    (5, r"service(\..*)?|settings"),
    (
        6,
        r"api(\..*)?|web(\..*)?|cli(\..*)?|report|demo|testing|__main__|__init__|examples(\..*)?",
    ),
]


def layer_of(module: str) -> int:
    for rank, pattern in LAYERS:
        if re.fullmatch(pattern, module):
            return rank
    raise AssertionError(f"module callout.{module} has no layer: add it to LAYERS")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"] or ["__init__"]
        found.append((".".join(parts), path))
    return found


def test_lower_layers_never_import_higher_ones() -> None:
    """No module imports a layer above its own (the import direction of DESIGN.md)."""
    wrong = []
    for name, path in modules():
        own = layer_of(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.startswith("callout."):
                    imported = target.removeprefix("callout.")
                    if layer_of(imported) > own:
                        wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_public_surface_is_sorted_and_importable() -> None:
    """`callout.__all__` is sorted and every name in it exists."""
    assert list(callout.__all__) == sorted(callout.__all__)
    for name in callout.__all__:
        assert getattr(callout, name) is not None
