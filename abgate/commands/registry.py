"""``abgate registry ...``: MLflow registry aliases, as the gateway serves them.

Reads MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) like every MLflow tool, and ABGATE_* for
Postgres.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.console import Console

from experiments.settings import Settings

app = typer.Typer(help="MLflow registry: resolve, promote, sync aliases.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


def _run(main: Any) -> Any:
    import warnings

    from batch import BatchError
    from experiments import ExperimentsError
    from registry import RegistryError

    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    try:
        return asyncio.run(main())
    except (RegistryError, BatchError, ExperimentsError) as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command("resolve")
def resolve(
    uri: str = typer.Argument(..., help="models:/NAME@ALIAS or models:/NAME/VERSION"),
) -> None:
    """Print the version a model URI names in MLflow, its run and its abgate lineage tags."""
    from experiments import ModelRef
    from registry import MlflowRegistry

    async def run() -> Any:
        return await MlflowRegistry().resolve(ModelRef.parse(uri))

    rv = _run(run)
    print(f"{rv.version}\trun {rv.run_id}\taliases {','.join(rv.aliases) or '-'}")
    for k, v in sorted(rv.tags.items()):
        print(f"  {k} = {v}")


@app.command("promote")
def promote_cmd(
    model: str = typer.Argument(..., help="Model name"),
    alias: str = typer.Argument(..., help="Alias, e.g. champion"),
    version: str = typer.Argument(..., help="Version (its results must be active in abgate)"),
) -> None:
    """Point MODEL@ALIAS at VERSION in abgate, then in MLflow (refused unless its results are active)."""
    from abgate.commands.batch import _pool
    from registry import MlflowRegistry, promote

    async def run() -> None:
        async with _pool(Settings()) as pool:
            await promote(pool, MlflowRegistry(), model, alias, version)

    _run(run)
    err.print(f"[green]promoted[/] models:/{model}@{alias} -> {version} (abgate and MLflow)")


@app.command("sync")
def sync_cmd(models: list[str] = typer.Argument(..., help="Registered model names")) -> None:
    """Copy MLflow's aliases into abgate (only onto versions whose results are active)."""
    from abgate.commands.batch import _pool
    from registry import MlflowRegistry, sync_aliases

    async def run() -> list[Any]:
        registry = MlflowRegistry()
        async with _pool(Settings()) as pool:
            return [await sync_aliases(pool, registry, m) for m in models]

    failed = False
    for report in _run(run):
        for line in report.moved:
            err.print(f"[green]moved[/] {line}")
        for line in report.unchanged:
            err.print(f"unchanged {line}")
        for line in report.skipped:
            failed = True
            err.print(f"[yellow]skipped[/] {line}")
    if failed:
        raise typer.Exit(1)
