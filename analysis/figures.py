"""From per-(variant, look) sufficient statistics to ``Report``: ``analyse``, with no I/O.

The last look is the whole window, so the fixed-horizon comparisons are the last look's, and
the sequential test runs over every look (``analysis.sequential``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.errors import NoExposures
from analysis.looks import arms_only, pooled, series
from analysis.metrics import MetricColumns, cuped_fit, metric_value, moments
from analysis.options import ReportOptions
from analysis.phase_report import phase_summaries
from analysis.phases import stratified_compare
from analysis.report import (
    Comparison,
    DailyPoint,
    Holdout,
    HoldoutComparison,
    LookEstimate,
    MetricResult,
    Power,
    Report,
    Segment,
    Skipped,
    VariantSummary,
)
from analysis.sequential import metric_looks
from analysis.sql import HOLDOUT, Look, PhaseRecord, QueryPlan
from analysis.verdict import decide
from experiments import Experiment


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


def _stratified_values(
    cols: MetricColumns, by_phase: Mapping[str, Mapping[str, Aggregates]], keys: Sequence[str]
) -> dict[str, float]:
    """Each arm's value, Σ_k w_k·m_{v,k} with w_k the phase's share of all arms' units (over the
    phases where the arm has units); the plain value with one phase."""
    phases = [arms for arms in by_phase.values() if any(a.count for a in arms.values())]
    if len(phases) <= 1:
        whole = pooled(by_phase)
        return {k: metric_value(cols, whole.get(k, Aggregates())) for k in keys}
    out: dict[str, float] = {}
    for k in keys:
        present = [arms for arms in phases if arms.get(k, Aggregates()).count > 0]
        total = sum(sum(a.count for a in arms.values()) for arms in present)
        out[k] = (
            sum(
                sum(a.count for a in arms.values()) / total * metric_value(cols, arms[k])
                for arms in present
            )
            if total
            else math.nan
        )
    return out


def _variance_reduction(
    cols: MetricColumns, by_phase: Mapping[str, Mapping[str, Aggregates]]
) -> float:
    """CUPED's share of per-unit variance removed: 1 − Σ(n_v−1)·s²_adj,v / Σ(n_v−1)·s²_v.

    Pooled within (phase, arm) groups with the same θ the comparisons use; NaN without variance.
    """
    groups = [a for arms in arms_only(by_phase).values() for a in arms.values() if a.count > 1]
    fit = cuped_fit(cols, groups)
    raw = sum((a.count - 1) * moments(cols, a).unit_var for a in groups)
    adjusted = sum((a.count - 1) * moments(cols, a, fit).unit_var for a in groups)
    return 1 - adjusted / raw if raw > 0 else math.nan


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


def _holdout(
    plan: QueryPlan,
    final: Mapping[str, Mapping[str, Aggregates]],
    experiment: Experiment,
    alpha: float,
) -> Holdout | None:
    """Every arm against the holdout, stratified by phase like the arms' comparisons.

    The p-values are Holm-adjusted across the family of every arm × every metric (a false
    alarm in any of them is the error controlled); the intervals are not adjusted.
    """
    held = pooled(final).get(HOLDOUT)
    if held is None or held.count == 0:
        return None
    comps = []
    for cols in plan.metrics:
        for v in experiment.variant_keys:
            e = stratified_compare(cols, final, HOLDOUT, v, alpha)
            comps.append(
                HoldoutComparison(
                    cols.metric.name,
                    v,
                    e.value_control,
                    e.value_variant,
                    e.diff,
                    e.diff_ci,
                    e.lift,
                    e.lift_ci,
                    e.p_value,
                )
            )
    adjusted = stats.holm([c.p_value for c in comps])
    return Holdout(
        held.count, [replace(c, p_value_adjusted=p) for c, p in zip(comps, adjusted, strict=True)]
    )


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
    phases: Sequence[PhaseRecord] = (),
    excluded: Mapping[str, Mapping[str, int]] | None = None,
    skipped: Skipped | None = None,
    warnings: Sequence[str] = (),
) -> Report:
    """The report of ``experiment`` from its looks' sufficient statistics, with its verdict.

    No I/O. ``phases`` and ``excluded`` are what the query found of the allocation phases
    (analysis.sql.Scan); looks without a phase are one phase with the file's weights.
    ``source``, ``generated_at`` (default: now) and ``config_version`` (the experiment's
    version in the store, when known) are the report's metadata; ``skipped`` what the scan
    left out (the verdict is invalid when it is too much: analysis.verdict); ``warnings``
    what the source could not read (shown under the verdict). NoExposures when there is no
    look: a report of zero units would be a table of dashes with a passing SRM check.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    arm_looks = [lk for lk in looks if lk.variant != HOLDOUT]
    if not arm_looks:
        raise NoExposures(
            f"no exposures of experiment '{experiment.key}' in {describe_source(source)} "
            f"{describe_window(since, until)}: check the key, the source and --since/--until"
        )
    opts = options or ReportOptions()
    report = _analyse_looks(experiment, plan, looks, alpha, opts, phases, excluded or {})
    report = replace(
        report,
        since=since,
        until=until,
        source=source,
        generated_at=generated_at or datetime.now(UTC),
        config_version=config_version,
        skipped=skipped,
        warnings=list(warnings),
    )
    if opts.segment is not None:
        report = replace(
            report,
            segment_by=opts.segment,
            segments=_segments(experiment, plan, looks, alpha, opts, phases, excluded or {}),
        )
    return replace(report, verdict=decide(report, experiment))


def _segments(
    experiment: Experiment,
    plan: QueryPlan,
    looks: Sequence[Look],
    alpha: float,
    opts: ReportOptions,
    phases: Sequence[PhaseRecord],
    excluded: Mapping[str, Mapping[str, int]],
) -> list[Segment]:
    """The report per value of the ``--by`` attribute, p-values Holm-adjusted across segments
    (per metric and arm): exploratory, many comparisons."""
    values = sorted({lk.segment or "(none)" for lk in looks})
    plain = replace(opts, segment=None, sequential_tau=None, power=None)
    parts: list[tuple[str, Report]] = []
    for value in values:
        mine = [lk for lk in looks if (lk.segment or "(none)") == value]
        if not any(lk.variant != HOLDOUT for lk in mine):
            continue
        parts.append(
            (value, _analyse_looks(experiment, plan, mine, alpha, plain, phases, excluded))
        )
    out: dict[str, dict[str, list[Comparison]]] = {v: {} for v, _ in parts}
    for i, m in enumerate(plan.metrics):
        for j in range(len(experiment.variant_keys) - 1):
            comps = [(value, rep.metrics[i].comparisons[j]) for value, rep in parts]
            adjusted = stats.holm([c.p_value for _, c in comps])
            for (value, c), p_adj in zip(comps, adjusted, strict=True):
                out[value].setdefault(m.metric.name, []).append(replace(c, p_value_adjusted=p_adj))
    return [
        Segment(value, {k: s.units for k, s in rep.variants.items()}, rep.srm_p_value, out[value])
        for value, rep in parts
    ]


def _analyse_looks(
    experiment: Experiment,
    plan: QueryPlan,
    looks: Sequence[Look],
    alpha: float,
    opts: ReportOptions,
    phases: Sequence[PhaseRecord],
    excluded: Mapping[str, Mapping[str, int]],
) -> Report:
    control = str(experiment.control)
    days = series(looks)
    final = days[-1][1]  # the last look: the whole window
    aggs = {v: a for v, a in pooled(final).items() if v != HOLDOUT}
    keys = list(experiment.variant_keys) + sorted(set(aggs) - set(experiment.variant_keys))
    variants = {
        k: VariantSummary(
            aggs[k].count if k in aggs else 0, round(aggs[k].sum("exposures")) if k in aggs else 0
        )
        for k in keys
    }
    summaries = phase_summaries(experiment, phases, final, excluded, days[-1][0])
    if len(summaries) == 1 and set(aggs) <= set(summaries[0].expected_share):
        srm = summaries[0].srm_p_value
    elif summaries and set(aggs) <= {v for s in summaries for v in s.expected_share}:
        srm = min(
            s.srm_p_value_adjusted for s in summaries if not math.isnan(s.srm_p_value_adjusted)
        )
    else:  # an arm no phase knows of: the plain check names it (p = 0)
        srm = stats.srm_p_value(
            {k: v.units for k, v in variants.items()}, experiment.expected_shares
        )
    new_units: list[dict[str, int]] = []
    before: Mapping[str, Aggregates] = {}
    for _, by_phase in days:
        day_aggs = pooled(by_phase)
        new_units.append(
            {
                k: (day_aggs[k].count if k in day_aggs else 0)
                - (before[k].count if k in before else 0)
                for k in keys
            }
        )
        before = day_aggs
    enrolment_days = sum(1 for n in new_units if any(n.values()))
    arm_final = arms_only(final)
    metrics: list[MetricResult] = []
    lifts: list[dict[str, dict[str, tuple[float, tuple[float, float]]]]] = [{} for _ in days]
    estimates: list[dict[str, dict[str, LookEstimate]]] = [{} for _ in days]
    for cols in plan.metrics:
        cuped = opts.cuped_window is not None and bool(cols.x)
        per_look = metric_looks(cols, days, experiment, alpha, cuped, opts.sequential_tau)
        last = per_look[-1]
        ests = [(v, e) for v, (e, _) in last.items()]
        adjusted = stats.holm([e.p_value for _, e in ests])
        values = _stratified_values(cols, arm_final, keys)
        control_value = values.get(control, math.nan)
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
        detail = [
            stratified_compare(cols, arm_final, control, v, alpha, cuped=cuped)
            for v in experiment.variant_keys
            if v != control
        ]
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
                cuped_variance_reduction=_variance_reduction(cols, final) if cuped else None,
                stratified=any(d.stratified for d in detail),
                phases_dropped=tuple(sorted({k for d in detail for k in d.phases_dropped})),
            )
        )
        for i, point in enumerate(per_look):
            lifts[i][cols.metric.name] = {v: (e.lift, e.lift_ci) for v, (e, _) in point.items()}
            estimates[i][cols.metric.name] = {v: rec for v, (_, rec) in point.items()}
    daily = [
        DailyPoint(day, new_units[i], lifts[i], estimates[i]) for i, (day, _) in enumerate(days)
    ]
    return Report(
        experiment.key,
        control,
        alpha,
        variants,
        srm,
        experiment.expected_shares,
        metrics,
        daily,
        phases=summaries,
        holdout=_holdout(plan, final, experiment, alpha),
    )
