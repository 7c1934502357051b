"""Per-look comparisons and the mSPRT always-valid p-values over the series of looks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.looks import ByPhase, arms_only, pooled
from analysis.metrics import MetricColumns, metric_value
from analysis.phases import stratified_compare
from analysis.report import LookEstimate
from experiments import Experiment


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
    arms = arms_only(by_phase)
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


def metric_looks(
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
        control = pooled(series[-1][1]).get(str(experiment.control), Aggregates())
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
