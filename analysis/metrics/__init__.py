"""Metric kinds: one ``MetricEstimator`` per kind, found by kind in ``ESTIMATORS``.

``proportion`` and ``mean`` metrics are means of per-unit values, compared with Welch's t-test
(optionally on CUPED-adjusted values); ``ratio`` metrics are Σnum/Σden, compared with the delta
method and the normal distribution (DESIGN.md, "Metrics and the report"). The functions below
dispatch on the metric's kind; every figure comes from sufficient statistics only.
"""

from __future__ import annotations

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.metrics.base import (
    EXPOSURES,
    CupedFit,
    MetricColumns,
    MetricEstimator,
    MetricSql,
    Moments,
    UnitTotals,
    cuped_fit,
)
from analysis.metrics.registry import ESTIMATORS, estimator_for

__all__ = [
    "ESTIMATORS",
    "EXPOSURES",
    "CupedFit",
    "MetricColumns",
    "MetricEstimator",
    "MetricSql",
    "Moments",
    "UnitTotals",
    "compare",
    "cuped_fit",
    "estimator_for",
    "metric_value",
    "moments",
]


def metric_value(cols: MetricColumns, agg: Aggregates) -> float:
    """The unadjusted value of a metric in one variant: a mean of per-unit values, or Σnum/Σden."""
    return estimator_for(cols).value(cols, agg)


def moments(cols: MetricColumns, agg: Aggregates, cuped: CupedFit | None = None) -> Moments:
    """Moments of a metric in one variant; with a ``CupedFit``, CUPED-adjusted."""
    return estimator_for(cols).moments(cols, agg, cuped)


def compare(cols: MetricColumns, t: Moments, c: Moments, alpha: float) -> stats.Estimate:
    """Treatment against control: Welch for means of per-unit values, normal for ratios."""
    return estimator_for(cols).compare(t, c, alpha)
