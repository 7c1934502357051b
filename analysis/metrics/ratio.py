"""``ratio``: Σ numerator / Σ denominator over units, compared with the delta method."""

from __future__ import annotations

import math
from typing import ClassVar

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.metrics.base import (
    CupedFit,
    MetricColumns,
    MetricEstimator,
    MetricSql,
    Moments,
    UnitTotals,
)
from experiments import Metric


class RatioMetric(MetricEstimator):
    """Per unit the counts of the numerator and denominator outcomes (``exposures`` counts the
    unit's exposures); the value is Σnum/Σden = mean(num)/mean(den), its variance the delta
    method's (``Aggregates.ratio_var``), compared with the normal distribution. No CUPED.

    References:
        Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD.
    """

    kind: ClassVar[str] = "ratio"

    def sql(self, metric: Metric, i: int, totals: UnitTotals, cuped: bool) -> MetricSql:
        """``num<i>`` and ``den<i>`` with their covariance pair."""
        if not (metric.numerator and metric.denominator):
            raise ValueError(f"ratio metric {metric.name} needs numerator and denominator")
        num, den = f"num{i}", f"den{i}"
        return MetricSql(
            MetricColumns(metric, num=num, den=den),
            [
                f"CAST({totals.count(metric.numerator)} AS DOUBLE) AS {num}",
                f"CAST({totals.count(metric.denominator)} AS DOUBLE) AS {den}",
            ],
            [(num, den)],
        )

    def value(self, cols: MetricColumns, agg: Aggregates) -> float:
        """Σnum/Σden (NaN without units or with a zero denominator)."""
        if agg.count == 0:
            return math.nan
        den = agg.mean[cols.den]
        return agg.mean[cols.num] / den if den != 0 else math.nan

    def moments(
        self, cols: MetricColumns, agg: Aggregates, cuped: CupedFit | None = None
    ) -> Moments:
        """The ratio and its delta-method variance (NaN under two units, as Welch's); ``cuped``
        does not apply."""
        n = agg.count
        if n == 0:
            return Moments(math.nan, math.nan, math.nan, 0)
        return Moments(self.value(cols, agg), agg.ratio_var(cols.num, cols.den), math.nan, n)

    def compare(self, t: Moments, c: Moments, alpha: float) -> stats.Estimate:
        """The normal comparison of the two ratios (``stats.normal_comparison``)."""
        return stats.normal_comparison(t.value, t.var_value, c.value, c.var_value, alpha)
