"""A metric's value and its comparison against control, from sufficient statistics only.

``proportion`` and ``mean`` metrics are means of per-unit values, compared with Welch's t-test
(optionally on CUPED-adjusted values); ``ratio`` metrics are Σnum/Σden, compared with the delta
method and the normal distribution (DESIGN.md, "Metrics and the report").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.sql import MetricColumns


@dataclass(frozen=True, slots=True)
class Moments:
    """A metric's estimate in one variant: its value, the variance of that value, and n."""

    value: float
    var_value: float  # Var of the estimate (s²/n for a mean; delta-method Var(R) for a ratio)
    unit_var: float  # per-unit variance s² (means only; NaN for ratios)
    n: int


def metric_value(cols: MetricColumns, agg: Aggregates) -> float:
    """The unadjusted value of a metric in one variant: a mean of per-unit values, or Σnum/Σden."""
    if agg.count == 0:
        return math.nan
    if cols.metric.kind == "ratio":
        den = agg.mean[cols.den]
        return agg.mean[cols.num] / den if den != 0 else math.nan
    return agg.mean[cols.y]


@dataclass(frozen=True, slots=True)
class CupedFit:
    """The CUPED coefficient θ and the covariate's mean over all units."""

    theta: float
    mean_x: float


def cuped_fit(cols: MetricColumns, aggs: Iterable[Aggregates]) -> CupedFit:
    """θ from the within-variant (pooled) covariance of Y and X, and X's overall mean.

    θ = Σ_v (n_v − 1)·cov_v(Y, X) / Σ_v (n_v − 1)·Var_v(X). Pooling within variants keeps the
    treatment effect out of θ; X is measured before exposure, so any fixed θ leaves the
    difference unbiased (``stats.cuped_theta``).
    """
    groups = [a for a in aggs if a.count > 0]
    co = sum((a.count - 1) * a.covariance(cols.y, cols.x) for a in groups)
    vx = sum((a.count - 1) * a.var[cols.x] for a in groups)
    n = sum(a.count for a in groups)
    mean_x = sum(a.count * a.mean[cols.x] for a in groups) / n if n else 0.0
    return CupedFit(stats.cuped_theta(co, vx), mean_x)


def moments(cols: MetricColumns, agg: Aggregates, cuped: CupedFit | None = None) -> Moments:
    """Moments of a metric in one variant; with a ``CupedFit``, CUPED-adjusted.

    CUPED: the adjusted mean is m_Y − θ·(m_X − overall m_X) and the adjusted per-unit variance
    Var(Y) − 2θ·cov(Y, X) + θ²·Var(X).
    """
    n = agg.count
    if n == 0:
        return Moments(math.nan, math.nan, math.nan, 0)
    if cols.metric.kind == "ratio":
        return Moments(metric_value(cols, agg), agg.ratio_var(cols.num, cols.den), math.nan, n)
    mean, var = agg.mean[cols.y], agg.var[cols.y]
    if cuped is not None and cols.x:
        theta = cuped.theta
        mean -= theta * (agg.mean[cols.x] - cuped.mean_x)
        var = max(
            0.0, var - 2 * theta * agg.covariance(cols.y, cols.x) + theta**2 * agg.var[cols.x]
        )
    return Moments(mean, var / n, var, n)


def compare(cols: MetricColumns, t: Moments, c: Moments, alpha: float) -> stats.Estimate:
    """Treatment against control: Welch for means of per-unit values, normal for ratios."""
    if cols.metric.kind == "ratio":
        return stats.normal_comparison(t.value, t.var_value, c.value, c.var_value, alpha)
    return stats.welch(t.value, t.unit_var, t.n, c.value, c.unit_var, c.n, alpha)
