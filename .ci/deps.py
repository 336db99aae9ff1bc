"""The runtime dependency range of pyproject.toml, for CI.

``python .ci/deps.py oldest``: one ``name==lower-bound`` line per runtime dependency (the oldest
releases the range admits), for ``pip install -c``; every dependency must have a ``>=`` bound.

``python .ci/deps.py check``: prints the installed version of each runtime dependency and exits
with status 1 if one is missing or outside the range pyproject.toml declares.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def dependencies() -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml."""
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def oldest() -> int:
    """Print a constraint pinning each dependency to its lower bound."""
    for spec in dependencies():
        name = re.match(r"\s*([A-Za-z0-9_.-]+)", spec)
        lower = re.search(r">=\s*([0-9][0-9.]*)", spec)
        if not (name and lower):
            print(f"{spec!r} has no >= lower bound to test", file=sys.stderr)
            return 1
        print(f"{name.group(1)}=={lower.group(1)}")
    return 0


def check() -> int:
    """Print the installed versions and whether they satisfy the declared range."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    status = 0
    for spec in dependencies():
        req = Requirement(spec)
        try:
            have = version(req.name)
        except PackageNotFoundError:
            have = None
        ok = have is not None and req.specifier.contains(have, prereleases=True)
        print(f"{req.name} {have or 'missing'} ({req.specifier}){'' if ok else ': OUT OF RANGE'}")
        status |= not ok
    return status


if __name__ == "__main__":
    commands = {"oldest": oldest, "check": check}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(commands)}}}")
    sys.exit(commands[sys.argv[1]]())
