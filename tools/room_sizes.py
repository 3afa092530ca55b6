"""Fail when a function or a module outgrows its room (limits in pyproject.toml, [tool.room-sizes]).

A function longer than `max_function_lines` or a module longer than `max_module_lines` holds more
than one idea; split it. Declarative tables (phrase lists, price tables) are listed in `exempt`.

    python tools/room_sizes.py            # checks the packages named in `paths`
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_limits() -> dict:
    """The [tool.room-sizes] table of pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["room-sizes"]


def python_files(paths: list[str], exempt: set[str]) -> list[Path]:
    """Every .py file under `paths`, migrations and exempt files left out."""
    found = []
    for path in paths:
        for file in sorted((ROOT / path).rglob("*.py")):
            relative = file.relative_to(ROOT).as_posix()
            if "migrations" not in file.parts and relative not in exempt:
                found.append(file)
    return found


def oversized(file: Path, max_function: int, max_module: int, root: Path = ROOT) -> list[str]:
    """One line per function or module of `file` that is over its limit."""
    source = file.read_text(encoding="utf-8")
    relative = file.relative_to(root).as_posix()
    problems = []
    lines = len(source.splitlines())
    if lines > max_module:
        problems.append(f"{relative}: module has {lines} lines (limit {max_module})")
    for node in ast.walk(ast.parse(source, filename=relative)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > max_function:
                problems.append(f"{relative}:{node.lineno}: {node.name}() has {length} lines (limit {max_function})")
    return problems


def main() -> int:
    limits = load_limits()
    problems = []
    for file in python_files(limits["paths"], set(limits.get("exempt", []))):
        problems += oversized(file, limits["max_function_lines"], limits["max_module_lines"])
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
