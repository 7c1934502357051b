"""``abgate batch ...``: load precomputed results and point aliases at versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from experiments.settings import Settings

app = typer.Typer(help="Precomputed results: load and alias model versions.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


async def _pool(settings: Settings):  # type: ignore[no-untyped-def]
    from abgate.embedded import start_postgres
    from experiments.postgres import create_pool

    dsn = settings.postgres_dsn or start_postgres(settings.data_dir)
    return await create_pool(dsn, settings.postgres_schema)


@app.command("load")
def load(
    file: Path = typer.Argument(
        ..., help="Results file: .jsonl ({unit_id, items}) or .csv (unit_id,item_id,score[,rank])"
    ),
    model: str = typer.Option(..., help="Model name (as registered in MLflow)"),
    version: str = typer.Option(..., help="Model version"),
    alias: str = typer.Option(None, help="Also point models:/MODEL@ALIAS at this version"),
) -> None:
    """Load a results file as MODEL/VERSION, replacing that version's rows atomically.

    The unit id __default__ holds the version's default list (served to units without one).
    """
    from batch import LoadError, load_results, read_results

    async def run() -> None:
        pool = await _pool(Settings())
        try:
            summary = await load_results(
                pool, read_results(file), model, version, source=str(file), alias=alias
            )
        finally:
            await pool.close()
        err.print(
            f"[green]loaded[/] models:/{model}/{version}: {summary.units} units, "
            f"default list of {summary.default_items} items"
            + (f", alias @{alias}" if alias else "")
        )

    try:
        asyncio.run(run())
    except LoadError as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command("alias")
def alias_cmd(
    model: str = typer.Argument(..., help="Model name"),
    alias: str = typer.Argument(..., help="Alias, e.g. champion"),
    version: str = typer.Argument(..., help="Version the alias points at"),
) -> None:
    """Point models:/MODEL@ALIAS at VERSION (running gateways follow within ABGATE_ALIAS_REFRESH s)."""
    from batch import set_alias

    async def run() -> None:
        pool = await _pool(Settings())
        try:
            await set_alias(pool, model, alias, version)
        finally:
            await pool.close()

    asyncio.run(run())
    err.print(f"[green]ok[/] models:/{model}@{alias} -> {version}")
