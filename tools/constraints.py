"""Write `constraints.txt`: every package the requirements pull in, at the version installed in this venv.

`requirements*.txt` pin what the project asks for; their dependencies' dependencies were free, so a fresh clone
installed whatever each one's newest release was that day. `make install`, `make install-dev` and the Dockerfile
install with `-c constraints.txt`, so they get the set the suite passed with. pip and setuptools stay the venv's;
the model wheels stay in `requirements-models.txt`, with their hashes. `tests/project/test_constraints.py` checks
that the three files agree and that this venv is what they say.

    python tools/constraints.py   # `make constraints`, after changing a pin and installing it
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
MODEL_WHEELS = ROOT / "requirements-models.txt"
NOT_CONSTRAINED = {"pip", "setuptools", "wheel"}  # the venv's own tools
HEADER = """\
# Every package the requirements pull in, at the version the suite passed with: written by `make constraints`
# (tools/constraints.py) from the development venv, less pip and the model wheels of requirements-models.txt.
# `make install`, `make install-dev` and the Dockerfile install with `-c constraints.txt`, so a fresh clone gets
# this set, not each dependency's newest release of the day. Change a pin in requirements*.txt, install it, then
# run `make constraints`.
"""
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements or constraints file, by canonical name."""
    found = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[canonical(match[1])] = match[2]
    return found


def installed() -> dict[str, tuple[str, str]]:
    """This venv's distributions, less its own tools and the model wheels: canonical name → (name, version)."""
    skip = NOT_CONSTRAINED | set(pins(MODEL_WHEELS))
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if canonical(name) not in skip:
            found[canonical(name)] = (name, dist.version)
    return found


def write() -> int:
    lines = [f"{name}=={version}" for name, version in sorted(installed().values(), key=lambda nv: canonical(nv[0]))]
    CONSTRAINTS.write_text(HEADER + "\n".join(lines) + "\n")
    print(f"constraints.txt: {len(lines)} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(write())
