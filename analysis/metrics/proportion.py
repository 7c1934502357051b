"""``proportion``: the share of units with at least one outcome of a name."""

from __future__ import annotations

from typing import ClassVar

from analysis.metrics.base import MetricSql, UnitMeanEstimator, UnitTotals
from experiments import Metric


class ProportionMetric(UnitMeanEstimator):
    """Per unit 1 if it logged the outcome at or after its first exposure, else 0; the value is
    the mean of those (a proportion), compared with Welch's t-test. CUPED's covariate is the
    same indicator in the window before first exposure."""

    kind: ClassVar[str] = "proportion"

    def sql(self, metric: Metric, i: int, totals: UnitTotals, cuped: bool) -> MetricSql:
        """``y<i>``: the 0/1 indicator; ``x<i>``: the pre-exposure indicator."""
        name = self._outcome(metric)
        value = f"CASE WHEN {totals.count(name)} > 0 THEN 1.0 ELSE 0.0 END"
        pre = f"CASE WHEN {totals.pre_count(name)} > 0 THEN 1.0 ELSE 0.0 END"
        return self._columns(metric, i, value, pre, cuped)
