"""Fail on dead code: vulture with the settings of pyproject.toml ([tool.vulture]), run by `make lint`.

On top of vulture's own `ignore_names`, fields are dropped here because they are read by name where vulture
cannot see it (the ORM, serializers, templates, LangGraph's state dict) and no name pattern can tell them apart:
a field declared in a class body (`name = models.CharField(...)`, a serializer or form field, a nested
`XSerializer(...)`), and the annotated fields of a dataclass, TypedDict or NamedTuple. Everything else vulture
finds is reported; `vulture_whitelist.py` lists the few names used from outside Python.

    python tools/dead_code.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from vulture import config
from vulture.core import Vulture

ROOT = Path(__file__).resolve().parent.parent
FIELD_MODULES = {"models", "serializers", "forms"}
DATA_SHAPES = {"dataclass", "TypedDict", "NamedTuple"}


def _is_field_call(value: ast.expr | None) -> bool:
    """`models.X(...)`, `serializers.X(...)`, `forms.X(...)` or `XSerializer(...)`."""
    function = getattr(value, "func", None)
    if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
        return function.value.id in FIELD_MODULES
    return isinstance(function, ast.Name) and function.id.endswith("Serializer")


def _is_data_shape(node: ast.ClassDef) -> bool:
    """A dataclass, TypedDict or NamedTuple: its annotated fields are read by name."""
    names = [ast.unparse(d).split("(")[0].split(".")[-1] for d in node.decorator_list]
    names += [ast.unparse(b).split(".")[-1] for b in node.bases]
    return bool(DATA_SHAPES.intersection(names))


def declared_fields(filename: str) -> set[int]:
    """Line numbers of the fields declared in the class bodies of `filename`."""
    lines = set()
    for node in ast.walk(ast.parse(Path(filename).read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ClassDef):
            continue
        shape = _is_data_shape(node)
        for statement in node.body:
            if isinstance(statement, ast.Assign | ast.AnnAssign) and (
                _is_field_call(statement.value) or (shape and isinstance(statement, ast.AnnAssign))
            ):
                lines.add(statement.lineno)
    return lines


def main() -> int:
    with (ROOT / "pyproject.toml").open("rb") as toml:
        settings = config.make_config(argv=[], tomlfile=toml)
    finder = Vulture(ignore_names=settings["ignore_names"], ignore_decorators=settings["ignore_decorators"])
    finder.scavenge([str(ROOT / path) for path in settings["paths"]], exclude=settings["exclude"])
    fields: dict[str, set[int]] = {}
    dead = []
    for item in finder.get_unused_code(min_confidence=settings["min_confidence"]):
        filename = str(item.filename)
        if item.typ == "variable" and item.first_lineno in fields.setdefault(filename, declared_fields(filename)):
            continue
        dead.append(item)
    for item in dead:
        print(item.get_report())
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main())
