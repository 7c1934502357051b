"""``abgate report``: an experiment report from archived logs (local archive or BigQuery).

duckdb, scipy and google-cloud-bigquery are imported inside the command, so ``abgate --help``
stays fast. Bad input (missing archive, invalid experiment file, unknown key) prints what is
wrong and exits 1, never a traceback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console


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


def report(
    key: str | None = typer.Argument(
        None, help="Experiment key, read from the configured experiments (ABGATE_EXPERIMENTS_DIR)"
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
) -> None:
    """Experiment report: lift with confidence intervals, SRM check, Holm-adjusted p-values."""
    from analysis import AnalysisError, ReportOptions, build_report, render_html, render_table
    from experiments import ConfigError, Experiment, load_config_dir, load_experiment_file
    from experiments.settings import Settings

    err = Console(stderr=True)
    settings = Settings()
    try:
        experiment: Experiment
        if config is not None:
            experiment = load_experiment_file(config)
        elif key is not None:
            cfg = load_config_dir(settings.experiments_dir)
            if key not in cfg.experiments:
                known = ", ".join(sorted(cfg.experiments)) or "none"
                err.print(
                    f"[red]error[/] no experiment '{key}' in {settings.experiments_dir} (known: {known}); or pass --config FILE",
                    highlight=False,
                )
                raise typer.Exit(1)
            experiment = cfg.experiments[key]
        else:
            err.print(
                "[red]error[/] name the experiment: abgate report KEY, or --config EXPERIMENT.yaml"
            )
            raise typer.Exit(1)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/] {issue}", highlight=False)
        raise typer.Exit(1) from None
    if not experiment.metrics:
        err.print(
            f"[yellow]note[/] experiment {experiment.key} declares no metrics: only units and SRM are reported"
        )
    opts = ReportOptions(
        cuped_window=timedelta(days=cuped_days) if cuped else None,
        sequential_tau=sequential_tau if sequential else None,
        power=power_level if power else None,
        target_mde=target_mde if power else None,
    )
    window = {"since": _when(since, "--since"), "until": _when(until, "--until")}
    try:
        if bigquery is not None:
            from analysis.bigquery import build_report_bigquery, make_client, parse_table

            table = parse_table(bigquery)
            client = make_client(table.split(".")[0], endpoint=bigquery_endpoint)
            rep = build_report_bigquery(
                experiment, table, client, alpha=alpha, options=opts, **window
            )
        else:
            rep = build_report(
                experiment, archive or settings.archive_dir, alpha=alpha, options=opts, **window
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
