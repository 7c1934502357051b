"""``abgate report``: placeholder until the analysis package lands."""

from __future__ import annotations

import typer


def report() -> None:
    """Experiment report from archived logs (not implemented yet)."""
    raise typer.Exit(2)
