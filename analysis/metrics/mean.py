"""``mean``: the mean over units of each unit's summed outcome values, optionally capped."""

from __future__ import annotations

from typing import ClassVar

from analysis.metrics.base import MetricSql, UnitMeanEstimator, UnitTotals
from experiments import Metric


class MeanMetric(UnitMeanEstimator):
    """Per unit the sum of the outcome's values at or after its first exposure (winsorised
    with a ``cap``); the value is the mean of those, compared with Welch's t-test. CUPED's
    covariate is the (uncapped) sum in the window before first exposure."""

    kind: ClassVar[str] = "mean"

    def sql(self, metric: Metric, i: int, totals: UnitTotals, cuped: bool) -> MetricSql:
        """``y<i>``: the unit's (capped) total; ``x<i>``: its pre-exposure total."""
        name = self._outcome(metric)
        value = capped(f"CAST({totals.total(name)} AS DOUBLE)", metric)
        pre = f"CAST({totals.pre_total(name)} AS DOUBLE)"
        return self._columns(metric, i, value, pre, cuped)


def capped(value: str, metric: Metric) -> str:
    """A mean metric's per-unit total, winsorised at its ``cap`` percentile of all units.

    ``LEAST(y, c)`` with c the P-th percentile of y over every unit of the experiment in the
    look (all arms pooled, so the cap cannot depend on the arm), interpolated between order
    statistics (``QUANTILE_CONT``, BigQuery's exact ``PERCENTILE_CONT`` analytic function;
    numpy's default ``percentile``). The metric then estimates E[min(Y, c)], not E[Y]. Each
    look caps at its own percentile, as a report run that day would have: the last look's is
    the percentile over every unit of the window.
    """
    if metric.cap is None:
        return value
    p = metric.cap.percentile / 100
    return f"LEAST({value}, QUANTILE_CONT({value}, {p!r}) OVER (PARTITION BY look))"
