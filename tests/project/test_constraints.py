"""`constraints.txt` pins everything the requirements pull in, agrees with their pins, and is what this venv runs."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

from tools.constraints import CONSTRAINTS, MODEL_WHEELS, NOT_CONSTRAINED, ROOT, canonical, pins

REQUIREMENTS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]


def asked_for() -> list[Requirement]:
    """The requirements the project names (with their extras), from both files."""
    lines = [line.split("#")[0].strip() for path in REQUIREMENTS for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def pulled_in() -> set[str]:
    """Every distribution the named requirements need on this platform, through their dependencies' dependencies."""
    seen: set[str] = set()
    todo = [(requirement, "") for requirement in asked_for()]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonical(requirement.name)
        extras = sorted(requirement.extras)
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        for needed in metadata.requires(requirement.name) or []:
            dependency = Requirement(needed)
            todo += [(dependency, wanted) for wanted in ["", *extras]]
    return {re.sub(r"\[.*", "", key) for key in seen}


def test_every_pin_of_the_requirements_is_the_constraint():
    constrained = pins(CONSTRAINTS)
    for path in REQUIREMENTS:
        for name, version in pins(path).items():
            assert constrained.get(name) == version, f"{path.name} pins {name}=={version}; run `make constraints`"


def test_the_constraints_are_exactly_what_the_requirements_pull_in():
    needed, constrained = pulled_in() - NOT_CONSTRAINED, set(pins(CONSTRAINTS))
    assert not needed - constrained, f"not in constraints.txt: {sorted(needed - constrained)}; run `make constraints`"
    # written from a venv holding something else too (a profiler tried out): not the project's to pin
    assert not constrained - needed, f"pulled in by no requirement: {sorted(constrained - needed)}"


def test_the_model_wheels_and_the_venvs_own_tools_stay_out():
    constrained = set(pins(CONSTRAINTS))
    assert constrained.isdisjoint(pins(MODEL_WHEELS))  # they are installed hash-checked, from their own file
    assert constrained.isdisjoint(NOT_CONSTRAINED)


def test_this_venv_runs_the_constrained_versions():
    wrong = {}
    for name, version in pins(CONSTRAINTS).items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = None
        if found != version:
            wrong[name] = (version, found)
    assert not wrong, f"constrained vs installed: {wrong}"
