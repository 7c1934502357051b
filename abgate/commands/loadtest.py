"""``abgate loadtest``: placeholder until the loadtests package lands."""

from __future__ import annotations

import typer


def loadtest() -> None:
    """Open-loop load generator (not implemented yet)."""
    raise typer.Exit(2)
