"""Building a report: from per-(variant, look) sufficient statistics to ``Report``.

``analyse`` is pure (looks in, report out); ``build_report`` and ``build_report_bigquery``
add the engine that produces the looks. A look is the data as of the end of one UTC day
(``analysis.sql.Look``); the last look is the whole window, so the fixed-horizon comparisons
are the last look's, and the sequential test runs over every look.
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
from analysis.report import (
    Comparison,
    DailyPoint,
    LookEstimate,
    MetricResult,
    Power,
    Report,
    VariantSummary,
)
from analysis.sql import Look, MetricColumns, QueryPlan
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
    return f"archive {source}" if source else "the given looks"


def describe_window(since: datetime | None, until: datetime | None) -> str:
    """The report window in words, for messages: "between A and B", "since A", "in all time"."""
    a = since.isoformat() if since else None
    b = until.isoformat() if until else None
    if a and b:
        return f"between {a} and {b}"
    if a:
        return f"since {a}"
    return f"before {b}" if b else "at any time (no --since/--until)"


def _series(looks: Iterable[Look]) -> list[tuple[date, dict[str, Aggregates]]]:
    """The looks in day order, each as variant -> aggregates (a variant with no unit yet absent)."""
    by_day: dict[date, dict[str, Aggregates]] = {}
    for look in looks:
        day = by_day.setdefault(look.day, {})
        if look.variant in day:
            raise ValueError(f"two looks of variant {look.variant!r} on {look.day}")
        day[look.variant] = look.stats
    return sorted(by_day.items())


def _comparisons(
    cols: MetricColumns,
    aggs: Mapping[str, Aggregates],
    experiment: Experiment,
    alpha: float,
    cuped: bool,
) -> list[tuple[str, stats.Estimate]]:
    control = str(experiment.control)
    # θ from this look's data only: a past look must not move when later outcomes arrive.
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


def _look_p(e: stats.Estimate, tau2: float) -> float:
    """One look's mSPRT p-value of a comparison (NaN when it cannot be estimated).

    The look's statistic enters Λ as the normal score with the same two-sided tail probability
    as the look's own test (``stats.normal_score``): exactly diff/se for the z-test of ratio
    metrics, and slightly below |t| for Welch's t with few units, whose heavier tails the plain
    diff/se would ignore. So a look's always-valid p is never below its fixed-horizon p.
    """
    if math.isnan(e.diff_se) or math.isnan(e.p_value):
        return math.nan
    diff = math.copysign(stats.normal_score(e.p_value), e.diff) * e.diff_se
    return stats.msprt_p_value(diff, e.diff_se**2, tau2)


def _metric_looks(
    cols: MetricColumns,
    series: Sequence[tuple[date, Mapping[str, Aggregates]]],
    experiment: Experiment,
    alpha: float,
    cuped: bool,
    tau_rel: float | None,
) -> list[dict[str, tuple[stats.Estimate, LookEstimate]]]:
    """Per look, per non-control variant: the look's comparison and its sequential record.

    The always-valid p is the running minimum over looks of ``_look_p``, with one τ for the
    whole series: τ = tau_rel·|control value at the last look| (the current report's control
    value), τ² its square.
    """
    tau2 = math.nan
    if tau_rel is not None and series:
        control = series[-1][1].get(str(experiment.control), Aggregates())
        tau2 = (tau_rel * abs(metric_value(cols, control))) ** 2
    running: dict[str, float] = {}
    out: list[dict[str, tuple[stats.Estimate, LookEstimate]]] = []
    for _, aggs in series:
        point: dict[str, tuple[stats.Estimate, LookEstimate]] = {}
        for v, e in _comparisons(cols, aggs, experiment, alpha, cuped):
            seq: float | None = None
            if tau_rel is not None:
                look = _look_p(e, tau2)
                seq = (
                    min(running.get(v, 1.0), look) if not math.isnan(look) else running.get(v, 1.0)
                )
                running[v] = seq
            var = e.diff_se**2 if not math.isnan(e.diff_se) else math.nan
            point[v] = (e, LookEstimate(e.diff, var, e.p_value, seq))
        out.append(point)
    return out


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
    looks: Sequence[Look],
    *,
    alpha: float = 0.05,
    options: ReportOptions | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str = "",
    generated_at: datetime | None = None,
    config_version: int | None = None,
) -> Report:
    """The report of ``experiment`` from its looks' sufficient statistics, with its verdict.

    No I/O. ``source``, ``generated_at`` (default: now) and ``config_version`` (the experiment's
    version in the store, when known) are the report's metadata. NoExposures when there is no
    look: a report of zero units would be a table of dashes with a passing SRM check.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not looks:
        raise NoExposures(
            f"no exposures of experiment '{experiment.key}' in {describe_source(source)} "
            f"{describe_window(since, until)}: check the key, the source and --since/--until"
        )
    opts = options or ReportOptions()
    control = str(experiment.control)
    series = _series(looks)
    aggs = dict(series[-1][1]) if series else {}  # the last look: the whole window
    keys = list(experiment.variant_keys) + sorted(set(aggs) - set(experiment.variant_keys))
    variants = {
        k: VariantSummary(
            aggs[k].count if k in aggs else 0, round(aggs[k].sum("exposures")) if k in aggs else 0
        )
        for k in keys
    }
    srm = stats.srm_p_value({k: v.units for k, v in variants.items()}, experiment.expected_shares)
    new_units: list[dict[str, int]] = []
    before: Mapping[str, Aggregates] = {}
    for _, day_aggs in series:
        new_units.append(
            {
                k: (day_aggs[k].count if k in day_aggs else 0)
                - (before[k].count if k in before else 0)
                for k in keys
            }
        )
        before = day_aggs
    enrolment_days = sum(1 for n in new_units if any(n.values()))
    metrics: list[MetricResult] = []
    lifts: list[dict[str, dict[str, tuple[float, tuple[float, float]]]]] = [{} for _ in series]
    estimates: list[dict[str, dict[str, LookEstimate]]] = [{} for _ in series]
    for cols in plan.metrics:
        cuped = opts.cuped_window is not None and bool(cols.x)
        per_look = _metric_looks(cols, series, experiment, alpha, cuped, opts.sequential_tau)
        last = per_look[-1] if per_look else {}
        ests = (
            [(v, e) for v, (e, _) in last.items()]
            if last
            else _comparisons(cols, {}, experiment, alpha, cuped)
        )
        adjusted = stats.holm([e.p_value for _, e in ests])
        control_value = metric_value(cols, aggs.get(control, Aggregates()))
        comps = []
        for (v, e), p_adj in zip(ests, adjusted, strict=True):
            seq = (
                (last[v][1].p_value_sequential if v in last else 1.0)
                if opts.sequential_tau
                else None
            )
            pw = (
                _power(e.diff_se, control_value, opts.power, opts.target_mde, alpha, enrolment_days)
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
        for i, point in enumerate(per_look):
            lifts[i][cols.metric.name] = {v: (e.lift, e.lift_ci) for v, (e, _) in point.items()}
            estimates[i][cols.metric.name] = {v: rec for v, (_, rec) in point.items()}
    daily = [
        DailyPoint(day, new_units[i], lifts[i], estimates[i]) for i, (day, _) in enumerate(series)
    ]
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
    plan, looks = scan_archive(
        experiment, Path(archive), since=since, until=until, cuped_window=opts.cuped_window
    )
    return analyse(
        experiment,
        plan,
        looks,
        alpha=alpha,
        options=opts,
        since=since,
        until=until,
        source=str(archive),
        config_version=config_version,
    )
