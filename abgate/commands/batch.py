"""``abgate batch ...``: load precomputed results."""

from __future__ import annotations

import typer

app = typer.Typer(help="Precomputed results: load, list, activate.", no_args_is_help=True)
