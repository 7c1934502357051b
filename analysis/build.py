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
from analysis.errors import MalformedArchive, NoExposures
from analysis.metrics import cuped_fit, metric_value, moments
from analysis.phases import Phase, phase_srm, plan_phases, stratified_compare
from analysis.report import (
    Comparison,
    DailyPoint,
    Holdout,
    HoldoutComparison,
    LookEstimate,
    MetricResult,
    PhaseSummary,
    Power,
    Report,
    Segment,
    Skipped,
    VariantSummary,
)
from analysis.sql import DEFAULT_OVERLAP, HOLDOUT, Look, MetricColumns, PhaseRecord, QueryPlan
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
    segment: str | None = None  # --by: the request attribute to break the figures down by


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


ByPhase = dict[str, dict[str, Aggregates]]  # phase -> variant -> aggregates


def _series(looks: Iterable[Look]) -> list[tuple[date, ByPhase]]:
    """The looks in day order, each as phase -> variant -> aggregates (segments merged).

    Several rows of one (day, phase, variant), one per ``--by`` segment, merge exactly
    (``Aggregates.__add__``); a variant with no unit yet is absent.
    """
    by_day: dict[date, ByPhase] = {}
    seen: set[tuple[date, str, str, str | None]] = set()
    for look in looks:
        key = (look.day, look.phase, look.variant, look.segment)
        if key in seen:
            raise ValueError(f"two looks of variant {look.variant!r} on {look.day}")
        seen.add(key)
        arms = by_day.setdefault(look.day, {}).setdefault(look.phase, {})
        arms[look.variant] = arms.get(look.variant, Aggregates()) + look.stats
    return sorted(by_day.items())


def _pooled(by_phase: Mapping[str, Mapping[str, Aggregates]]) -> dict[str, Aggregates]:
    """variant -> aggregates over every phase."""
    out: dict[str, Aggregates] = {}
    for arms in by_phase.values():
        for v, a in arms.items():
            out[v] = out.get(v, Aggregates()) + a
    return out


def _arms_only(by_phase: Mapping[str, Mapping[str, Aggregates]]) -> ByPhase:
    """``by_phase`` without the holdout pseudo-arm."""
    return {k: {v: a for v, a in arms.items() if v != HOLDOUT} for k, arms in by_phase.items()}


def _comparisons(
    cols: MetricColumns,
    by_phase: Mapping[str, Mapping[str, Aggregates]],
    experiment: Experiment,
    alpha: float,
    cuped: bool,
) -> list[tuple[str, stats.Estimate]]:
    """Each non-control arm against control, stratified by enrolment phase
    (``phases.stratified_compare``; exactly DESIGN.md's single-phase figures with one phase).

    θ of CUPED comes from this look's data only: a past look must not move when later outcomes
    arrive.
    """
    control = str(experiment.control)
    arms = _arms_only(by_phase)
    return [
        (
            v,
            stratified_compare(
                cols, arms, control, v, alpha, cuped=cuped and bool(cols.x)
            ).estimate,
        )
        for v in experiment.variant_keys
        if v != control
    ]


def _stratified_values(
    cols: MetricColumns, by_phase: Mapping[str, Mapping[str, Aggregates]], keys: Sequence[str]
) -> dict[str, float]:
    """Each arm's value, Σ_k w_k·m_{v,k} with w_k the phase's share of all arms' units (over the
    phases where the arm has units); the plain value with one phase."""
    phases = [arms for arms in by_phase.values() if any(a.count for a in arms.values())]
    if len(phases) <= 1:
        pooled = _pooled(by_phase)
        return {k: metric_value(cols, pooled.get(k, Aggregates())) for k in keys}
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
    groups = [a for arms in _arms_only(by_phase).values() for a in arms.values() if a.count > 1]
    pooled = cuped_fit(cols, groups)
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
    series: Sequence[tuple[date, ByPhase]],
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
        control = _pooled(series[-1][1]).get(str(experiment.control), Aggregates())
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


def _phase_objects(
    experiment: Experiment, records: Sequence[PhaseRecord], ids: Iterable[str], last: date
) -> list[Phase]:
    """``analysis.phases.Phase`` of every phase: the logged weights, or the experiment file's
    for records without a phase (``""``) or without logged weights."""
    file_weights = tuple((v.key, float(v.weight)) for v in experiment.variants)
    known = {r.id: r for r in records}
    far = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)
    out = []
    for pid in sorted(set(ids) | set(known)):
        r = known.get(pid)
        weights = (
            tuple((v, w) for v, w, _, _ in r.arms) if r is not None and r.arms else file_weights
        )
        start = r.start if r is not None else far
        end = r.end if r is not None else far
        out.append(Phase(pid, start, end, weights))
    return out


def _phase_summaries(
    experiment: Experiment,
    records: Sequence[PhaseRecord],
    final: Mapping[str, Mapping[str, Aggregates]],
    excluded: Mapping[str, Mapping[str, int]],
    last: date,
) -> list[PhaseSummary]:
    """Every phase with its kept units per arm and its SRM check (Holm across phases)."""
    arms = _arms_only(final)
    phases = _phase_objects(experiment, records, [k for k, a in arms.items() if a], last)
    plan = plan_phases(phases, overlap=DEFAULT_OVERLAP)
    units = {k: {v: a.count for v, a in arms.get(k, {}).items()} for k in (p.id for p in phases)}
    checks = {c.phase: c for c in phase_srm(plan, units)}
    return [
        PhaseSummary(
            p.phase.id,
            next((r.start for r in records if r.id == p.phase.id), None),
            next((r.end for r in records if r.id == p.phase.id), None),
            dict(p.phase.weights),
            {v: checks[p.phase.id].units.get(v, 0) for v in p.phase.variants}
            | dict(checks[p.phase.id].units),
            dict(excluded.get(p.phase.id, {})),
            dict(p.expected_share),
            checks[p.phase.id].p_value,
            checks[p.phase.id].p_value_adjusted,
        )
        for p in plan.phases
    ]


def _holdout(
    plan: QueryPlan,
    final: Mapping[str, Mapping[str, Aggregates]],
    experiment: Experiment,
    alpha: float,
) -> Holdout | None:
    """Every arm against the holdout, stratified by phase like the arms' comparisons."""
    held = _pooled(final).get(HOLDOUT)
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
    return Holdout(held.count, comps)


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
) -> Report:
    """The report of ``experiment`` from its looks' sufficient statistics, with its verdict.

    No I/O. ``phases`` and ``excluded`` are what the query found of the allocation phases
    (analysis.sql.Scan); looks without a phase are one phase with the file's weights.
    ``source``, ``generated_at`` (default: now) and ``config_version`` (the experiment's
    version in the store, when known) are the report's metadata; ``skipped`` what the scan
    left out (the verdict is invalid when it is too much: analysis.verdict). NoExposures when there is no
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
    series = _series(looks)
    final = series[-1][1]  # the last look: the whole window
    aggs = {v: a for v, a in _pooled(final).items() if v != HOLDOUT}
    keys = list(experiment.variant_keys) + sorted(set(aggs) - set(experiment.variant_keys))
    variants = {
        k: VariantSummary(
            aggs[k].count if k in aggs else 0, round(aggs[k].sum("exposures")) if k in aggs else 0
        )
        for k in keys
    }
    summaries = _phase_summaries(experiment, phases, final, excluded, series[-1][0])
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
    for _, by_phase in series:
        day_aggs = _pooled(by_phase)
        new_units.append(
            {
                k: (day_aggs[k].count if k in day_aggs else 0)
                - (before[k].count if k in before else 0)
                for k in keys
            }
        )
        before = day_aggs
    enrolment_days = sum(1 for n in new_units if any(n.values()))
    arm_final = _arms_only(final)
    metrics: list[MetricResult] = []
    lifts: list[dict[str, dict[str, tuple[float, tuple[float, float]]]]] = [{} for _ in series]
    estimates: list[dict[str, dict[str, LookEstimate]]] = [{} for _ in series]
    for cols in plan.metrics:
        cuped = opts.cuped_window is not None and bool(cols.x)
        per_look = _metric_looks(cols, series, experiment, alpha, cuped, opts.sequential_tau)
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
        DailyPoint(day, new_units[i], lifts[i], estimates[i]) for i, (day, _) in enumerate(series)
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


def build_report(
    experiment: Experiment,
    archive: Path,
    *,
    alpha: float = 0.05,
    since: datetime | None = None,
    until: datetime | None = None,
    options: ReportOptions | None = None,
    config_version: int | None = None,
    strict: bool = False,
) -> Report:
    """Report of ``experiment`` from a local archive (aggregated in DuckDB).

    Torn lines and incomplete records are skipped and counted (``Report.skipped``); with
    ``strict``, MalformedArchive names the first of them instead.
    """
    from analysis.archive import scan_archive

    opts = options or ReportOptions()
    plan, scan, skipped = scan_archive(
        experiment,
        Path(archive),
        since=since,
        until=until,
        cuped_window=opts.cuped_window,
        segment=opts.segment,
    )
    if strict and skipped.lines:
        where = f"{skipped.first[0]}" if skipped.first else "unknown line"
        raise MalformedArchive(
            f"archive {archive}: {where} ({skipped.lines:,} malformed line"
            f"{'s' * (skipped.lines != 1)} in all; without --strict the report skips and counts "
            "them; `abgate logs verify` lists torn lines per hour)"
        )
    return analyse(
        experiment,
        plan,
        scan.looks,
        phases=scan.phases,
        excluded=scan.excluded,
        alpha=alpha,
        options=opts,
        since=since,
        until=until,
        source=str(archive),
        config_version=config_version,
        skipped=skipped,
    )
