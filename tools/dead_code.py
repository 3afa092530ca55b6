"""Fail on dead code: vulture with the settings of pyproject.toml ([tool.vulture]), run by `make lint`.

On top of vulture's own `ignore_names`, one kind of finding is dropped here because Django reads it by
name and no name pattern can tell it apart: a field declared in a class body (`name = models.CharField(...)`,
a serializer or form field). Everything else vulture finds is reported; `vulture_whitelist.py` lists
the few names called from outside Python (templates, settings strings).

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


def declared_fields(filename: str) -> set[int]:
    """Line numbers of fields declared in a class body: `x = models.Y(...)`, `serializers.Y(...)`, `forms.Y(...)`."""
    lines = set()
    for node in ast.walk(ast.parse(Path(filename).read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            value = getattr(statement, "value", None)
            function = getattr(value, "func", None)
            if (
                isinstance(statement, ast.Assign | ast.AnnAssign)
                and isinstance(function, ast.Attribute)
                and isinstance(function.value, ast.Name)
                and function.value.id in FIELD_MODULES
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
