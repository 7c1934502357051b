"""The ``abgate`` console script: one command line in front of every package.

Each command group lives in ``abgate/commands/``; heavy libraries (duckdb, scipy, mlflow) are
imported inside the commands that use them, so ``abgate --help`` stays fast.
"""

from __future__ import annotations

import typer

from abgate.commands import batch, experiments, keys, loadtest, logs, registry, report, serve


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"abgate {version('abgate')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("abgate (not installed)")
        raise typer.Exit()


app = typer.Typer(
    name="abgate",
    help="Online A/B experimentation gateway for precomputed ML results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """Online A/B experimentation gateway for precomputed ML results."""


app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.add_typer(experiments.app, name="experiments")
app.add_typer(batch.app, name="batch")
app.add_typer(registry.app, name="registry")
app.add_typer(keys.app, name="keys")
app.command("report")(report.report)
app.add_typer(logs.app, name="logs")
app.command("loadtest")(loadtest.loadtest)


def main() -> None:
    """Entry point of the console script."""
    app()
