"""``abgate report``: an experiment report from archived logs (local archive or BigQuery).

duckdb, scipy and google-cloud-bigquery are imported inside the command, so ``abgate --help``
stays fast. Bad input (missing archive, invalid experiment file, unknown key, no exposures in
the window, an ``--out`` folder that does not exist, a malformed archive line with ``--strict``)
prints what is wrong and exits 1, never a traceback; an unreachable experiment store exits 3.
Without ``--strict``, malformed lines are skipped, counted and shown next to the verdict.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from abgate.commands import runtime

if TYPE_CHECKING:
    from experiments import Experiment
    from experiments.settings import Settings


class Format(StrEnum):
    """Output formats of the report."""

    json = "json"
    table = "table"
    html = "html"


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date or time (e.g. 2026-11-20 or 2026-11-20T09:00:00Z)",
            param_hint=option,
        ) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _fail(err: Console, message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error[/] {message}", highlight=False)
    raise typer.Exit(code)


def _experiment(
    key: str | None, config: Path | None, settings: Settings, err: Console
) -> tuple[Experiment, int | None]:
    """The experiment to report on and its configuration version (None for a file)."""
    from experiments import ConfigError, load_config_dir, load_experiment_file

    try:
        if config is not None:
            return load_experiment_file(config), None
        if key is None:
            _fail(err, "name the experiment: abgate report KEY, or --config EXPERIMENT.yaml")
        if settings.experiments_dir is None:
            return _stored_experiment(key, settings, err)
        cfg = load_config_dir(settings.experiments_dir)
        if key not in cfg.experiments:
            known = ", ".join(sorted(cfg.experiments)) or "none"
            _fail(
                err,
                f"no experiment '{key}' in {settings.experiments_dir} (known: {known}); or pass --config FILE",
            )
        return cfg.experiments[key], None
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/] {issue}", highlight=False)
        raise typer.Exit(1) from None


def _stored_experiment(key: str, settings: Settings, err: Console) -> tuple[Experiment, int]:
    """The current version of ``key`` in the Postgres experiment store (ABGATE_POSTGRES_*).

    Exit 1 when the store has no such experiment, 3 when Postgres cannot be reached (as the
    ``abgate experiments`` commands do).
    """
    import asyncpg

    from experiments import ExperimentNotFound, StoreUnavailable
    from experiments.store import PostgresExperimentStore

    where = f"the experiment store (Postgres schema {settings.postgres_schema})"

    async def read() -> tuple[Experiment, int]:
        async with runtime.postgres_pool(settings, max_size=1) as pool:
            stored = await PostgresExperimentStore(pool).get(key)
        return stored.experiment, stored.version

    try:
        return asyncio.run(read())
    except ExperimentNotFound:
        _fail(
            err,
            f"no experiment '{key}' in {where}; set ABGATE_EXPERIMENTS_DIR for a folder of files, "
            "or pass --config FILE",
        )
    except (StoreUnavailable, OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _fail(err, f"cannot read {where}: {exc}", runtime.UNAVAILABLE)


def report(
    key: str | None = typer.Argument(
        None,
        help="Experiment key, read from ABGATE_EXPERIMENTS_DIR, or the Postgres experiment store when unset",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Experiment YAML file (no database needed)"
    ),
    archive: Path | None = typer.Option(
        None, "--archive", "-a", help="Archive root (default: ABGATE_ARCHIVE_DIR)"
    ),
    bigquery: str | None = typer.Option(
        None, "--bigquery", help="Read a Cloud Logging sink table PROJECT.DATASET.TABLE instead"
    ),
    bigquery_endpoint: str | None = typer.Option(
        None, "--bigquery-endpoint", help="BigQuery API endpoint (emulator); anonymous credentials"
    ),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="json, table or html"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write to this file instead of stdout"
    ),
    alpha: float = typer.Option(
        0.05, "--alpha", min=1e-6, max=0.5, help="Significance level (CI level 1 − alpha)"
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only exposures at or after this UTC time"
    ),
    until: str | None = typer.Option(None, "--until", help="Only events before this UTC time"),
    cuped: bool = typer.Option(
        False, "--cuped", help="CUPED: adjust by each metric's value before first exposure"
    ),
    cuped_days: float = typer.Option(
        14.0, "--cuped-days", min=0.001, help="Pre-exposure window of --cuped, in days"
    ),
    sequential: bool = typer.Option(
        False, "--sequential", help="Add mSPRT always-valid p-values (safe to peek daily)"
    ),
    sequential_tau: float = typer.Option(
        0.1,
        "--sequential-tau",
        min=1e-6,
        help="mSPRT mixture scale, as a fraction of the control value",
    ),
    power: bool = typer.Option(
        False, "--power", help="Add the minimal detectable effect of each comparison"
    ),
    power_level: float = typer.Option(
        0.8, "--power-level", min=0.01, max=0.999, help="Power for --power"
    ),
    target_mde: float | None = typer.Option(
        None,
        "--target-mde",
        min=1e-6,
        help="With --power: days until this relative MDE (0.02 = 2%)",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail (exit 1, naming the file and line) on a malformed archive line instead of "
        "skipping and counting it",
    ),
    by: str | None = typer.Option(
        None,
        "--by",
        help="Also give the figures per value of this logged request attribute "
        "(the surface's log_attributes); exploratory, Holm across segments",
    ),
) -> None:
    """Experiment report: a verdict, lift with confidence intervals, SRM check, Holm p-values."""
    from analysis import (
        AnalysisError,
        BigQuerySource,
        CohortSource,
        ReportOptions,
        build_report,
        render_html,
        render_table,
    )
    from experiments.settings import Settings

    err = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width
    settings = Settings()
    if out is not None and not out.parent.is_dir():
        _fail(err, f"--out {out}: folder {out.parent} does not exist (create it first)")
    experiment, config_version = _experiment(key, config, settings, err)
    if not experiment.metrics:
        err.print(
            f"[yellow]note[/] experiment {experiment.key} declares no metrics: only units and SRM are reported"
        )
    opts = ReportOptions(
        cuped_window=timedelta(days=cuped_days) if cuped else None,
        sequential_tau=sequential_tau if sequential else None,
        power=power_level if power else None,
        target_mde=target_mde if power else None,
        segment=by,
    )
    window = {"since": _when(since, "--since"), "until": _when(until, "--until")}
    try:
        source: CohortSource | Path
        if bigquery is not None:
            source = BigQuerySource.connect(bigquery, endpoint=bigquery_endpoint)
        else:
            source = archive or settings.archive_dir
        rep = build_report(
            experiment,
            source,
            opts,
            alpha=alpha,
            config_version=config_version,
            strict=strict,
            **window,
        )
    except AnalysisError as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from None

    if fmt is Format.json:
        text = json.dumps(rep.to_dict(), indent=2) + "\n"
    elif fmt is Format.html:
        text = render_html(rep)
    else:
        console = (
            Console(file=out.open("w", encoding="utf-8"), width=120)
            if out
            else Console(width=max(Console().width, 120))
        )
        render_table(rep, console)
        if out:
            console.file.close()
            err.print(f"wrote {out}")
        return
    if out:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)
