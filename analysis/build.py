"""Building a report: from per-(variant, day) sufficient statistics to ``Report``.

``analyse`` is pure (cohorts in, report out); ``build_report`` and ``build_report_bigquery``
add the engine that produces the cohorts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.errors import NoExposures
from analysis.metrics import compare, cuped_fit, metric_value, moments
from analysis.report import Comparison, DailyPoint, MetricResult, Power, Report, VariantSummary
from analysis.sql import Cohort, MetricColumns, QueryPlan
from analysis.verdict import decide
from experiments import Experiment


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """Optional methods beyond DESIGN.md's defaults (all off by default).

    cuped_window: CUPED with the same metric in this window before first exposure.
    sequential_tau: mSPRT always-valid p-values, mixture scale τ as a fraction of the control
        value (τ = sequential_tau·|control value|).
    power: target power for the MDE (e.g. 0.8); target_mde: relative effect for days-to-target.
    """

    cuped_window: timedelta | None = None
    sequential_tau: float | None = None
    power: float | None = None
    target_mde: float | None = None


def describe_source(source: str) -> str:
    """``Report.source`` in words: "archive PATH" or "BigQuery table P.D.T"."""
    if source.startswith("bigquery:"):
        return f"BigQuery table {source.removeprefix('bigquery:')}"
    return f"archive {source}" if source else "the given cohorts"


def describe_window(since: datetime | None, until: datetime | None) -> str:
    """The report window in words, for messages: "between A and B", "since A", "in all time"."""
    a = since.isoformat() if since else None
    b = until.isoformat() if until else None
    if a and b:
        return f"between {a} and {b}"
    if a:
        return f"since {a}"
    return f"before {b}" if b else "at any time (no --since/--until)"


def _by_variant(cohorts: Iterable[Cohort]) -> dict[str, Aggregates]:
    out: dict[str, Aggregates] = {}
    for c in cohorts:
        out[c.variant] = out.get(c.variant, Aggregates()) + c.stats
    return out


def _cumulative(cohorts: Sequence[Cohort], days: Sequence[date]) -> list[dict[str, Aggregates]]:
    """Per-variant aggregates of the units enrolled up to each day (running merge)."""
    by_day: dict[date, list[Cohort]] = {}
    for c in cohorts:
        by_day.setdefault(c.day, []).append(c)
    running: dict[str, Aggregates] = {}
    out = []
    for d in days:
        for c in by_day[d]:
            running[c.variant] = running.get(c.variant, Aggregates()) + c.stats
        out.append(dict(running))
    return out


def _comparisons(
    cols: MetricColumns,
    aggs: Mapping[str, Aggregates],
    experiment: Experiment,
    alpha: float,
    cuped: bool,
) -> list[tuple[str, stats.Estimate]]:
    control = str(experiment.control)
    pooled = cuped_fit(cols, aggs.values()) if cuped and cols.x else None
    empty = Aggregates()
    c = moments(cols, aggs.get(control, empty), pooled)
    return [
        (v, compare(cols, moments(cols, aggs.get(v, empty), pooled), c, alpha))
        for v in experiment.variant_keys
        if v != control
    ]


def _variance_reduction(cols: MetricColumns, aggs: Mapping[str, Aggregates]) -> float:
    """CUPED's share of per-unit variance removed: 1 − Σ(n_v−1)·s²_adj,v / Σ(n_v−1)·s²_v.

    Pooled within arms with the same θ the comparisons use; NaN without variance.
    """
    pooled = cuped_fit(cols, aggs.values())
    groups = [a for a in aggs.values() if a.count > 1]
    raw = sum((a.count - 1) * moments(cols, a).unit_var for a in groups)
    adjusted = sum((a.count - 1) * moments(cols, a, pooled).unit_var for a in groups)
    return 1 - adjusted / raw if raw > 0 else math.nan


def _sequential_p(
    cols: MetricColumns,
    daily: Sequence[Mapping[str, Aggregates]],
    experiment: Experiment,
    variant: str,
    tau_rel: float,
) -> float:
    """Running minimum over enrolment days of the mSPRT p-value (``stats.msprt_p_value``)."""
    control = str(experiment.control)
    final = daily[-1] if daily else {}
    scale = abs(metric_value(cols, final.get(control, Aggregates())))
    tau2 = (tau_rel * scale) ** 2
    p = 1.0
    for aggs in daily:
        est = _comparisons(cols, aggs, experiment, 0.05, cuped=False)
        for v, e in est:
            if v == variant and not math.isnan(e.diff_se):
                look = stats.msprt_p_value(e.diff, e.diff_se**2, tau2)
                p = min(p, look) if not math.isnan(look) else p
    return p


def _power(
    se: float, control_value: float, power: float, target: float | None, alpha: float, days: int
) -> Power:
    rel = stats.mde(se, alpha, power) / abs(control_value) if control_value else math.nan
    to_target: float | None = None
    if target is not None:
        # se ∝ 1/sqrt(N) and N grows linearly with days at the observed enrolment rate.
        total = days * (rel / target) ** 2 if not math.isnan(rel) else math.nan
        to_target = max(0.0, total - days) if not math.isnan(total) else math.nan
    return Power(rel, target, to_target)


def analyse(
    experiment: Experiment,
    plan: QueryPlan,
    cohorts: Sequence[Cohort],
    *,
    alpha: float = 0.05,
    options: ReportOptions | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str = "",
    generated_at: datetime | None = None,
    config_version: int | None = None,
) -> Report:
    """The report of ``experiment`` from its cohorts' sufficient statistics, with its verdict.

    No I/O. ``source``, ``generated_at`` (default: now) and ``config_version`` (the experiment's
    version in the store, when known) are the report's metadata. NoExposures when there is no
    cohort: a report of zero units would be a table of dashes with a passing SRM check.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not cohorts:
        raise NoExposures(
            f"no exposures of experiment '{experiment.key}' in {describe_source(source)} "
            f"{describe_window(since, until)}: check the key, the source and --since/--until"
        )
    opts = options or ReportOptions()
    control = str(experiment.control)
    aggs = _by_variant(cohorts)
    keys = list(experiment.variant_keys) + sorted(set(aggs) - set(experiment.variant_keys))
    variants = {
        k: VariantSummary(
            aggs[k].count if k in aggs else 0, round(aggs[k].sum("exposures")) if k in aggs else 0
        )
        for k in keys
    }
    srm = stats.srm_p_value({k: v.units for k, v in variants.items()}, experiment.expected_shares)
    days = sorted({c.day for c in cohorts})
    daily_aggs = _cumulative(cohorts, days)
    metrics: list[MetricResult] = []
    daily_lifts: list[dict[str, dict[str, tuple[float, tuple[float, float]]]]] = [{} for _ in days]
    for cols in plan.metrics:
        cuped = opts.cuped_window is not None and bool(cols.x)
        ests = _comparisons(cols, aggs, experiment, alpha, cuped)
        adjusted = stats.holm([e.p_value for _, e in ests])
        control_value = metric_value(cols, aggs.get(control, Aggregates()))
        comps = []
        for (v, e), p_adj in zip(ests, adjusted, strict=True):
            seq = (
                _sequential_p(cols, daily_aggs, experiment, v, opts.sequential_tau)
                if opts.sequential_tau
                else None
            )
            pw = (
                _power(e.diff_se, control_value, opts.power, opts.target_mde, alpha, len(days))
                if opts.power
                else None
            )
            comps.append(
                Comparison(v, e.diff, e.diff_ci, e.lift, e.lift_ci, e.p_value, p_adj, seq, pw)
            )
        values = {k: metric_value(cols, aggs.get(k, Aggregates())) for k in keys}
        m = cols.metric
        metrics.append(
            MetricResult(
                m.name,
                m.kind,
                values,
                comps,
                cuped,
                role="primary" if m is experiment.primary_metric else m.role,
                direction=m.direction,
                margin=m.margin,
                cap=m.cap.percentile if m.cap else None,
                cuped_variance_reduction=_variance_reduction(cols, aggs) if cuped else None,
            )
        )
        for i, day_aggs in enumerate(daily_aggs):
            daily_lifts[i][cols.metric.name] = {
                v: (e.lift, e.lift_ci)
                for v, e in _comparisons(cols, day_aggs, experiment, alpha, False)
            }
    new_units = {d: {k: 0 for k in keys} for d in days}
    for c in cohorts:
        new_units[c.day][c.variant] = new_units[c.day].get(c.variant, 0) + c.stats.count
    daily = [DailyPoint(d, new_units[d], daily_lifts[i]) for i, d in enumerate(days)]
    report = Report(
        experiment.key,
        control,
        alpha,
        variants,
        srm,
        experiment.expected_shares,
        metrics,
        daily,
        since,
        until,
        source,
        generated_at=generated_at or datetime.now(UTC),
        config_version=config_version,
    )
    return replace(report, verdict=decide(report, experiment))


def build_report(
    experiment: Experiment,
    archive: Path,
    *,
    alpha: float = 0.05,
    since: datetime | None = None,
    until: datetime | None = None,
    options: ReportOptions | None = None,
    config_version: int | None = None,
) -> Report:
    """Report of ``experiment`` from a local archive (aggregated in DuckDB)."""
    from analysis.archive import scan_archive

    opts = options or ReportOptions()
    plan, cohorts = scan_archive(
        experiment, Path(archive), since=since, until=until, cuped_window=opts.cuped_window
    )
    return analyse(
        experiment,
        plan,
        cohorts,
        alpha=alpha,
        options=opts,
        since=since,
        until=until,
        source=str(archive),
        config_version=config_version,
    )
