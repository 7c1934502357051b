"""Print the requirements of abgate (and of the named extras) from pyproject.toml, one a line.

The image installs these in a layer of their own, before the source is copied, so that a
change of code rebuilds only the last, small layer:

    python3 deploy/container/requirements.py pyproject.toml batch mlflow > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """The core dependencies, then each extra's, without duplicates, in file order."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no extra named {', '.join(unknown)}")
    out: list[str] = []
    for req in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        if req not in out:
            out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
