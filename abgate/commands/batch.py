"""``abgate batch ...``: load, activate, roll back, drop and warm precomputed results; predict.

Every command reads ABGATE_* settings (Postgres, Redis, schema, key prefix, cache TTL); predict
and --mlflow-tags also read MLFLOW_TRACKING_URI. Errors print one line naming what is wrong;
exit codes as every command's (abgate/commands/runtime.py): 1 invalid input or refused, 3
Postgres cannot be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import typer
from rich.console import Console
from rich.table import Table

from abgate.commands import runtime
from experiments.settings import Settings

app = typer.Typer(
    help="Precomputed results: load, activate, roll back, drop, warm, predict.",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _columns(mapping: list[str]) -> dict[str, str]:
    outm = {}
    for m in mapping:
        name, _, source = m.partition("=")
        if (
            name not in ("unit_id", "item_id", "score", "rank", "items", "item_ids", "scores")
            or not source
        ):
            raise typer.BadParameter(
                f"'{m}': use NAME=SOURCE_COLUMN, NAME one of unit_id, item_id, score, rank, items, item_ids, scores"
            )
        outm[name] = source
    return outm


def _print_summary(s: Any, alias: str | None) -> None:
    if s.unchanged:
        err.print(
            f"[green]unchanged[/] models:/{s.model}/{s.version} is active with the same results ({s.results_sha256[:19]}…)"
        )
        return
    state = "activated" if s.activated else "staged (activate with `abgate batch activate`)"
    rate = s.items / s.seconds if s.seconds else 0
    err.print(
        f"[green]loaded[/] models:/{s.model}/{s.version}: {s.units:,} units, {s.items:,} items "
        f"({rate:,.0f} items/s), default list of {s.default_items} items, {state}"
        + (f", alias @{alias}" if alias and s.activated else "")
    )


async def _tag_mlflow(pool: asyncpg.Pool, model: str, version: str, load_id: int) -> None:
    from batch.lineage import lineage_tags
    from experiments import ModelVersion
    from registry import MlflowRegistry

    meta = await pool.fetchval(
        "SELECT metadata::text FROM result_loads WHERE load_id = $1", load_id
    )
    await MlflowRegistry().set_tags(ModelVersion(model, version), lineage_tags(orjson.loads(meta)))


async def _retain(
    pool: asyncpg.Pool, settings: Settings, keep: int, model: str | None, dry_run: bool
) -> None:
    from batch import drop, retention_candidates, serving_refs

    refs = await serving_refs(pool, settings.experiments_dir)
    for mv in await retention_candidates(pool, keep, refs, model):
        if dry_run:
            err.print(f"would drop {mv}")
        else:
            await drop(pool, mv, refs)
            err.print(f"[yellow]dropped[/] {mv} (retention: keep {keep})")


@app.command("load")
def load(
    source: str = typer.Argument(
        ...,
        help="Results: PATH (.csv, .jsonl, .parquet), gs://BUCKET/OBJECT or bq://PROJECT.DATASET.TABLE",
    ),
    model: str = typer.Option(..., help="Model name (as registered in MLflow)"),
    version: str = typer.Option(..., help="Model version"),
    alias: str = typer.Option(None, help="Also point the alias MODEL@ALIAS at this version"),
    staged: bool = typer.Option(
        False, "--no-activate", help="Stage only: serve it later with `abgate batch activate`"
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Replace an active version that has other results"
    ),
    min_items: int = typer.Option(1, help="Shortest valid list"),
    max_items: int = typer.Option(1000, help="Longest valid list"),
    no_default_ok: bool = typer.Option(
        False,
        "--no-require-default",
        help="Accept results without a __default__ unit (the default list)",
    ),
    column: list[str] = typer.Option(
        [], help="Map a contract column to the input's: unit_id=user_id"
    ),
    keep: int = typer.Option(
        0, help="Then apply the retention rule: keep the KEEP newest versions (0: off)"
    ),
    mlflow_tags: bool = typer.Option(
        False, "--mlflow-tags", help="Write lineage tags on the MLflow model version"
    ),
) -> None:
    """Load results as MODEL/VERSION: COPY into a staging table, validate, activate atomically.

    Long inputs have one row per unit-item pair (unit_id,item_id,score[,rank]);
    wide inputs one row per unit (unit_id,items or unit_id,item_ids,scores).
    The unit __default__ holds the version's default list. An interrupted load
    leaves the previous state serving: just re-run.
    """
    from batch import Limits, load_results, open_input
    from batch.progress import RichProgress

    settings = Settings()

    async def run() -> None:
        inp = open_input(source, columns=_columns(column))
        async with runtime.postgres_pool(settings) as pool:
            with RichProgress(err, f"load {model}/{version}", inp.total, inp.measure) as bar:
                summary = await load_results(
                    pool,
                    inp,
                    model,
                    version,
                    alias=alias,
                    activate=not staged,
                    replace=replace,
                    limits=Limits(min_items, max_items, require_default=not no_default_ok),
                    progress=bar,
                )
            _print_summary(summary, alias)
            if mlflow_tags and not summary.unchanged:
                await _tag_mlflow(pool, model, version, summary.load_id)
            if keep:
                await _retain(pool, settings, keep, model, False)

    runtime.run(run)


@app.command("alias")
def alias_cmd(
    model: str = typer.Argument(..., help="Model name"),
    alias: str = typer.Argument(..., help="Alias, e.g. champion"),
    version: str = typer.Argument(..., help="Version the alias points at"),
) -> None:
    """Point models:/MODEL@ALIAS at VERSION (running gateways follow within ABGATE_ALIAS_REFRESH s)."""
    from registry import promote

    async def run() -> None:
        async with runtime.postgres_pool(Settings()) as pool:
            await promote(pool, None, model, alias, version)

    runtime.run(run)
    err.print(f"[green]ok[/] models:/{model}@{alias} -> {version}")


@app.command("versions")
def versions(
    model: str = typer.Argument(None, help="Only this model"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines with the full lineage"),
) -> None:
    """List loaded versions: status, units, aliases, size, source and content hash."""
    from batch import list_versions

    async def run() -> list[Any]:
        async with runtime.postgres_pool(Settings()) as pool:
            return await list_versions(pool, model)

    rows = runtime.run(run)
    if as_json:
        for v in rows:
            record = {
                "model": v.model,
                "version": v.version,
                "status": v.status,
                "units": v.units,
                "default_items": v.default_items,
                "aliases": list(v.aliases),
                "activated_at": v.activated_at.isoformat() if v.activated_at else None,
                "bytes": v.bytes,
                "metadata": v.metadata,
            }
            print(orjson.dumps(record).decode())
        return
    t = Table(
        "model",
        "version",
        "status",
        "units",
        "default",
        "aliases",
        "size",
        "activated",
        "source",
        "input hash",
    )
    for v in rows:
        size = f"{(v.bytes or 0) / 2**20:,.1f} MiB" if v.bytes is not None else ""
        t.add_row(
            v.model,
            v.version,
            v.status,
            f"{v.units:,}",
            str(v.default_items),
            " ".join("@" + a for a in v.aliases),
            size,
            v.activated_at.strftime("%Y-%m-%d %H:%M") if v.activated_at else "",
            str(v.metadata.get("source", "")),
            str(v.metadata.get("input_hash", ""))[:19],
        )
    out.print(t)


@app.command("activate")
def activate_cmd(
    model: str = typer.Argument(..., help="Model name"),
    version: str = typer.Argument(..., help="Version whose staged load to activate"),
    alias: str = typer.Option(None, help="Also point models:/MODEL@ALIAS at it"),
) -> None:
    """Serve the latest staged load of MODEL/VERSION (loaded with --no-activate), atomically."""
    from batch import activate

    async def run() -> int:
        async with runtime.postgres_pool(Settings()) as pool:
            return await activate(pool, model, version, alias=alias)

    load_id = runtime.run(run)
    what = f"load {load_id}" if load_id else "already active"
    err.print(
        f"[green]active[/] models:/{model}/{version} ({what})"
        + (f", alias @{alias}" if alias else "")
    )


@app.command("rollback")
def rollback_cmd(
    model: str = typer.Argument(..., help="Model name"),
    alias: str = typer.Option("champion", help="The alias to move back"),
    mlflow: bool = typer.Option(False, "--mlflow", help="Move the MLflow registry's alias too"),
) -> None:
    """Move models:/MODEL@ALIAS back to the version it pointed at before (repeat to go further)."""
    from batch import rollback

    async def run() -> tuple[str, str]:
        async with runtime.postgres_pool(Settings()) as pool:
            before, after = await rollback(pool, model, alias)
        if mlflow:
            from registry import MlflowRegistry

            await MlflowRegistry().set_alias(model, alias, after)
        return before, after

    before, after = runtime.run(run)
    err.print(f"[green]rolled back[/] models:/{model}@{alias}: {before} -> {after}")


@app.command("drop")
def drop_cmd(
    model: str = typer.Argument(..., help="Model name"),
    version: str = typer.Argument(..., help="Version to drop"),
) -> None:
    """Drop a version's results (refused while an alias, a surface or a running experiment uses it)."""
    from batch import drop, serving_refs
    from experiments import ModelVersion

    settings = Settings()

    async def run() -> None:
        async with runtime.postgres_pool(settings) as pool:
            await drop(
                pool,
                ModelVersion(model, version),
                await serving_refs(pool, settings.experiments_dir),
            )

    runtime.run(run)
    err.print(f"[yellow]dropped[/] models:/{model}/{version} (metadata kept, status retired)")


@app.command("retain")
def retain_cmd(
    keep: int = typer.Option(3, min=1, help="Active versions to keep per model, newest first"),
    model: str = typer.Option(None, help="Only this model"),
    dry_run: bool = typer.Option(False, help="Only print what would be dropped"),
) -> None:
    """The retention rule: drop all but the KEEP newest active versions of each model, never one
    that an alias, a surface or a running experiment uses."""
    settings = Settings()

    async def run() -> None:
        async with runtime.postgres_pool(settings) as pool:
            await _retain(pool, settings, keep, model, dry_run)

    runtime.run(run)


@app.command("warm")
def warm_cmd(
    model: str = typer.Option(..., help="Model name"),
    version: str = typer.Option(..., help="Model version (active)"),
    top: int = typer.Option(0, help="Only the TOP most recently active units (0: every unit)"),
    activity: Path = typer.Option(
        None,
        help="Recent units: a file of unit ids (newest first) or a log archive (default ABGATE_ARCHIVE_DIR)",
    ),
    ttl: int = typer.Option(
        0, help="Seconds to keep the keys (0: ABGATE_CACHE_TTL, as the gateway)"
    ),
    workers: int = typer.Option(
        4,
        min=1,
        max=64,
        help="Parallel copies, each with a Postgres and a Redis connection (more help when "
        "Redis and Postgres have cores of their own)",
    ),
) -> None:
    """Pipeline a version's lists into Redis under the gateway's keys, with the gateway's bytes.

    Stops at the first failure (exit 1) saying how many keys were written; every
    key written is whole, so running it again finishes the job.
    """
    import redis.asyncio as aioredis

    from abgate.embedded import start_redis
    from batch import recent_units, warm
    from batch.progress import RichProgress
    from experiments import ModelVersion

    settings = Settings()

    async def run() -> Any:
        units = recent_units(activity or settings.archive_dir, top) if top else None
        client = aioredis.from_url(settings.redis_url or start_redis(settings.data_dir))
        try:
            async with runtime.postgres_pool(settings, max_size=workers) as pool:
                total = (
                    len(units)
                    if units is not None
                    else await pool.fetchval(
                        "SELECT unit_count FROM model_versions WHERE model = $1 AND version = $2",
                        model,
                        version,
                    )
                )
                with RichProgress(err, f"warm {model}/{version}", total, "keys") as bar:
                    return await warm(
                        pool,
                        client,
                        ModelVersion(model, version),
                        prefix=settings.redis_prefix,
                        ttl=ttl or settings.cache_ttl,
                        units=units,
                        workers=workers,
                        progress=bar,
                    )
        finally:
            await client.aclose()

    s = runtime.run(run)
    err.print(
        f"[green]warmed[/] {s.keys:,} keys ({s.bytes / 2**20:,.1f} MiB) in {s.seconds:.1f} s, "
        f"{s.keys / max(s.seconds, 1e-9):,.0f} keys/s"
        + (f"; {s.missing:,} units have no list" if s.missing else "")
    )


@app.command("predict")
def predict_cmd(
    model: str = typer.Option(..., help="models:/NAME@ALIAS or models:/NAME/VERSION"),
    input: Path = typer.Option(..., help="Feature table (.parquet or .csv) with a unit_id column"),
    top_k: int = typer.Option(..., min=1, help="Items per unit"),
    chunk_rows: int = typer.Option(10_000, min=1, help="Rows scored at a time (bounds memory)"),
    alias: str = typer.Option(
        None, help="Point models:/NAME@ALIAS (in abgate) at the resolved version"
    ),
    staged: bool = typer.Option(
        False, "--no-activate", help="Stage only: serve it later with `abgate batch activate`"
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Replace an active version that has other results"
    ),
) -> None:
    """Score FEATURES with an MLflow pyfunc model and load the lists as the resolved version,
    tagged (in MLflow too) with the input's lineage."""
    import warnings

    from batch.predict import predict
    from batch.progress import RichProgress
    from experiments import ModelRef
    from registry import MlflowRegistry

    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    settings = Settings()

    async def run() -> Any:
        registry = MlflowRegistry()
        async with runtime.postgres_pool(settings) as pool:
            with RichProgress(err, f"predict {model}", None, "rows") as bar:
                return await predict(
                    pool,
                    registry,
                    ModelRef.parse(model),
                    input,
                    top_k=top_k,
                    chunk_rows=chunk_rows,
                    alias=alias,
                    activate=not staged,
                    replace=replace,
                    progress=bar,
                )

    rv, summary = runtime.run(run)
    err.print(f"resolved {model} -> {rv.version} (run {rv.run_id})")
    _print_summary(summary, alias)


@app.command("example-model")
def example_model_cmd(
    name: str = typer.Option("home_recs", help="Registered model name"),
    alias: str = typer.Option("champion", help="MLflow alias to set"),
    features: Path = typer.Option(
        None, help="Also write the example's feature table here (.parquet/.csv)"
    ),
    units: int = typer.Option(500, help="Synthetic units"),
) -> None:
    """Fit the example co-occurrence recommender on synthetic data and register it in MLflow
    (MLFLOW_TRACKING_URI, e.g. sqlite:///mlflow.db)."""
    import warnings

    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    from batch.example_model import features_of, log_example_model, synthetic_interactions

    inter = synthetic_interactions(units=units)
    mv = log_example_model(name, inter, alias=alias)
    if features is not None:
        f = features_of(inter)
        f.to_parquet(features, index=False) if features.suffix != ".csv" else f.to_csv(
            features, index=False
        )
    err.print(
        f"[green]registered[/] {mv} (@{alias})" + (f"; features in {features}" if features else "")
    )
