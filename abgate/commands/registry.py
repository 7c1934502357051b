"""``abgate registry ...``: MLflow registry aliases, as the gateway serves them.

Reads MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) like every MLflow tool, and ABGATE_* for
Postgres.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from abgate.commands import runtime
from experiments.settings import Settings

app = typer.Typer(
    help="MLflow registry: resolve, promote with evidence, lineage, sync aliases.",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``runtime.run``, with MLflow's warnings (deprecations of its own stack) silenced."""
    import warnings

    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    return runtime.run(main)


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
    version: str = typer.Argument(..., help="Version (its results must be active)"),
    experiment: str | None = typer.Option(
        None, "--experiment", "-e", help="Promote on this experiment's verdict (ship)"
    ),
    variant: str | None = typer.Option(
        None, "--variant", help="The variant serving VERSION (default: found)"
    ),
    archive: Path | None = typer.Option(
        None, "--archive", "-a", help="Archive root (default: ABGATE_ARCHIVE_DIR)"
    ),
    bigquery: str | None = typer.Option(
        None, "--bigquery", help="Read the sink table PROJECT.DATASET.TABLE instead"
    ),
    bigquery_endpoint: str | None = typer.Option(
        None, "--bigquery-endpoint", help="BigQuery API endpoint (emulator)"
    ),
    since: str | None = typer.Option(None, "--since", help="Exposures at or after (UTC)"),
    until: str | None = typer.Option(None, "--until", help="Events before (UTC)"),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="Significance level"),
    force: bool = typer.Option(
        False, "--force", help="Promote although the evidence says no (needs --reason)"
    ),
    reason: str | None = typer.Option(
        None, "--reason", "-m", help="Why --force: recorded in tags and history"
    ),
    by: str | None = typer.Option(None, "--by", help="Who promotes (default: $USER)"),
) -> None:
    """Point MODEL@ALIAS at VERSION in abgate, then in MLflow.

    With --experiment KEY: refused unless the variant serving VERSION has the
    verdict "ship"; the evidence goes to abgate.promotion.* tags and the history.
    """

    from abgate.commands.report import _when
    from abgate.promotion import PromotionRefused, ReportInput

    if force and not (reason and reason.strip()):
        raise typer.BadParameter(
            "--force needs --reason TEXT (it is recorded)", param_hint="--force"
        )
    if (force or reason) and experiment is None:
        raise typer.BadParameter(
            "--force and --reason override an experiment's verdict: use them with --experiment",
            param_hint="--force",
        )
    if reason and not force:
        raise typer.BadParameter("--reason goes with --force", param_hint="--reason")
    settings = Settings()
    source = ReportInput(archive or settings.archive_dir, bigquery, bigquery_endpoint)
    window = (_when(since, "--since"), _when(until, "--until"))
    who = runtime.author(by)

    async def run() -> Any:
        from abgate.promotion import alias_users
        from registry import MlflowRegistry, promote

        async with runtime.postgres_pool(settings) as pool:
            outcome = None
            if experiment is not None:
                outcome = await _evidence(
                    pool, settings, model, alias, version, experiment, variant, source, window,
                    alpha, who, reason if force else None,
                )  # fmt: skip
            await promote(
                pool, MlflowRegistry(), model, alias, version,
                evidence=outcome.evidence if outcome else None,
            )  # fmt: skip
            return outcome, await alias_users(settings, pool, model, alias)

    try:
        outcome, (users, has_pins) = _run(run)
    except PromotionRefused as exc:
        hint = " (override: --force --reason TEXT)" if exc.overridable else ""
        err.print(
            f"[red]refused[/] models:/{model}/{version} -> @{alias}: {exc}{hint}", highlight=False
        )
        raise typer.Exit(1) from None
    _report_promotion(model, alias, version, outcome)
    from abgate.promotion import describe_users

    for level, line in describe_users(users, has_pins, model, alias, version):
        colour = "yellow" if level == "warning" else "cyan"
        err.print(f"[{colour}]{level}[/] {line}", highlight=False)


async def _evidence(
    pool: Any,
    settings: Settings,
    model: str,
    alias: str,
    version: str,
    key: str,
    variant: str | None,
    source: Any,
    window: tuple[Any, Any],
    alpha: float,
    who: str,
    force_reason: str | None,
) -> Any:
    """Find the experiment, run its report, judge the variant; raise PromotionRefused unless
    it ships (or the refusal is overridden)."""
    import dataclasses

    from abgate.promotion import (
        PromotionRefused,
        current_aliases,
        find_experiment,
        judge,
        pinned_versions,
        run_report,
        serving_variant,
    )
    from experiments import ModelVersion

    found = await find_experiment(settings, pool, key)
    mv = ModelVersion(model, version)
    overridden = None
    try:
        arm = serving_variant(
            found.experiment,
            mv,
            variant,
            await pinned_versions(pool, found.experiment, model),
            await current_aliases(pool, model),
        )
    except PromotionRefused as exc:
        if not (exc.overridable and force_reason and variant):
            raise
        arm, overridden = variant, str(exc)
    digest = None
    if source.bigquery is None:
        digest = await asyncio.to_thread(_digest_or_refuse, source.archive)
    since, until = window
    report = await asyncio.to_thread(
        run_report, found.experiment, source, alpha=alpha, since=since, until=until,
        config_version=found.config_version,
    )  # fmt: skip
    if digest is not None:
        changed = digest.changed_since(source.archive)
        if changed:
            err.print(
                f"[yellow]warning[/] {len(changed)} archive file(s) changed while the report ran "
                f"(first: {changed[0]}); the digest covers them as they were before it. For a "
                "reproducible record, promote on a copy or with --until in the past.",
                highlight=False,
            )
    decision = judge(
        found, report, arm, alias=alias, source=source, digest=digest, promoted_by=who,
        force_reason=force_reason,
    )  # fmt: skip
    refusal = "; ".join(r for r in (overridden, decision.refusal) if r)
    if refusal and force_reason is None:
        raise PromotionRefused(refusal, overridable=True)
    if refusal:
        evidence = dataclasses.replace(decision.evidence, forced=True, force_reason=force_reason)
        return dataclasses.replace(decision, evidence=evidence, refusal=refusal)
    return decision


def _digest_or_refuse(root: Path) -> Any:
    from abgate.promotion import PromotionRefused, archive_digest
    from analysis import AnalysisError

    try:
        return archive_digest(root)
    except AnalysisError as exc:
        raise PromotionRefused(f"cannot build the report: {exc}", overridable=False) from None


def _report_promotion(model: str, alias: str, version: str, outcome: Any) -> None:
    where = f"models:/{model}@{alias} -> {version} (abgate and MLflow)"
    if outcome is None:
        err.print(f"[green]promoted[/] {where}")
        err.print(
            "[yellow]warning[/] no evidence was checked: pass --experiment KEY to promote on "
            "an experiment's verdict (docs/ml-engineers.md)",
            highlight=False,
        )
        return
    ev = outcome.evidence
    lift = "n/a" if ev.lift is None else f"{ev.lift:+.2%}"
    ci = ", ".join("n/a" if x is None else f"{x:+.2%}" for x in ev.lift_ci)
    p = "n/a" if ev.p_value_adjusted is None else f"{ev.p_value_adjusted:.3g}"
    err.print(f"[green]promoted[/] {where}", highlight=False)
    err.print(
        f"  evidence: experiment {ev.experiment}, variant {ev.variant}: {ev.metric} lift "
        f"{lift} [{ci}], p (Holm) {p}; units "
        + ", ".join(f"{k} {n:,}" for k, n in ev.units.items()),
        highlight=False,
    )
    if ev.forced:
        err.print(
            f"[yellow]forced[/] over: {outcome.refusal}; reason: {ev.force_reason}",
            highlight=False,
        )
    err.print(f"  tags abgate.promotion.* on models:/{model}/{version}", highlight=False)


class LineageFormat(StrEnum):
    """Output formats of ``registry lineage``."""

    table = "table"
    json = "json"


@app.command("lineage")
def lineage_cmd(
    uri: str = typer.Argument(..., help="models:/NAME/VERSION (or models:/NAME@ALIAS)"),
    fmt: LineageFormat = typer.Option(LineageFormat.table, "--format", "-f", help="table or json"),
) -> None:
    """Print a version's chain: dataset -> run -> version -> loads -> experiments -> promotions."""
    import json

    from abgate.lineage import gather, render
    from experiments import ModelRef, ModelVersion
    from registry import MlflowRegistry

    settings = Settings()

    async def run() -> Any:
        registry = MlflowRegistry()
        ref = ModelRef.parse(uri)
        version = ref.version or (await registry.resolve(ref)).version.version
        async with runtime.postgres_pool(settings) as pool:
            return await gather(pool, registry, settings, ModelVersion(ref.name, version))

    lin = _run(run)
    if fmt is LineageFormat.json:
        typer.echo(json.dumps(lin.to_dict(), indent=2))
    else:
        Console(soft_wrap=False).print(render(lin))


@app.command("sync")
def sync_cmd(models: list[str] = typer.Argument(..., help="Registered model names")) -> None:
    """Copy MLflow's aliases into abgate (only onto versions whose results are active)."""
    from registry import MlflowRegistry, sync_aliases

    async def run() -> list[Any]:
        registry = MlflowRegistry()
        async with runtime.postgres_pool(Settings()) as pool:
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
