"""``abgate experiments ...``: validate experiment files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from experiments import ConfigError, load_config_dir, load_experiment_file

app = typer.Typer(help="Experiment configuration.", no_args_is_help=True)


@app.command("validate")
def validate(paths: list[Path] = typer.Argument(..., help="Experiment files or folders")) -> None:
    """Validate experiment files (or folders, checked together); exit 1 naming every problem."""
    console = Console(stderr=True)
    failed = False
    for p in paths:
        try:
            if p.is_dir():
                cfg = load_config_dir(p)
                console.print(f"[green]ok[/] {p}: {len(cfg.surfaces)} surfaces, {len(cfg.experiments)} experiments")
            else:
                e = load_experiment_file(p)
                console.print(f"[green]ok[/] {p}: experiment {e.key} ({len(e.variants)} variants)")
        except ConfigError as exc:
            failed = True
            for issue in exc.issues:
                console.print(f"[red]error[/] {issue}", highlight=False)
    raise typer.Exit(1 if failed else 0)
