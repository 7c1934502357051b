"""What every metric kind provides, and the values it passes around.

A kind (``proportion``, ``mean``, ``ratio``: ``experiments.MetricKind``) is one
``MetricEstimator``: the per-unit SQL columns the engine aggregates, the metric's value and
moments in one variant from those aggregates only, and the comparison of two variants. The
engine's statement is written once in DuckDB's dialect and transpiled for BigQuery
(``analysis.sql``), so a kind writes its columns once for both engines.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from analysis import stats
from analysis.aggregates import Aggregates
from experiments import Metric

EXPOSURES = "exposures"  # the reserved numerator/denominator name of ratio metrics


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Names of the per-unit columns that carry one metric in the aggregated result."""

    metric: Metric
    y: str = ""  # proportion / mean: the per-unit value
    x: str = ""  # proportion / mean with CUPED: the same value in the pre-exposure window
    num: str = ""  # ratio: per-unit numerator
    den: str = ""  # ratio: per-unit denominator


@dataclass(frozen=True, slots=True)
class UnitTotals:
    """The per-unit counters of the statement a kind builds its columns from.

    Outcome ``name`` (index j among the outcomes the experiment's metrics read) is counted in
    ``cnt_j`` and its values summed in ``sum_j`` at or after the unit's first exposure; with
    CUPED, ``pre_cnt_j``/``pre_sum_j`` hold the same in the window before. ``exposures`` is the
    unit's exposure count (the reserved outcome name ``EXPOSURES``).
    """

    index: dict[str, int]

    def count(self, name: str) -> str:
        """The column counting outcome ``name`` (or the exposures) after first exposure."""
        return EXPOSURES if name == EXPOSURES else f"cnt_{self.index[name]}"

    def total(self, name: str) -> str:
        """The column summing outcome ``name``'s values after first exposure."""
        return f"sum_{self.index[name]}"

    def pre_count(self, name: str) -> str:
        """The column counting outcome ``name`` in the CUPED window before first exposure."""
        return f"pre_cnt_{self.index[name]}"

    def pre_total(self, name: str) -> str:
        """The column summing outcome ``name``'s values in the CUPED window."""
        return f"pre_sum_{self.index[name]}"


@dataclass(frozen=True, slots=True)
class MetricSql:
    """A metric's share of the statement: its column names, ``expr AS name`` select items
    (in ``unit_values``, per unit and look) and the column pairs whose covariance it needs."""

    columns: MetricColumns
    exprs: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Moments:
    """A metric's estimate in one variant: its value, the variance of that value, and n."""

    value: float
    var_value: float  # Var of the estimate (s²/n for a mean; delta-method Var(R) for a ratio)
    unit_var: float  # per-unit variance s² (means only; NaN for ratios)
    n: int


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


class MetricEstimator(ABC):
    """One metric kind: its per-unit SQL columns, value, moments and comparison."""

    kind: ClassVar[str]

    @abstractmethod
    def sql(self, metric: Metric, i: int, totals: UnitTotals, cuped: bool) -> MetricSql:
        """The per-unit columns of metric number ``i`` over the unit's ``totals``; with
        ``cuped``, also its pre-exposure covariate (kinds that support one)."""

    @abstractmethod
    def value(self, cols: MetricColumns, agg: Aggregates) -> float:
        """The unadjusted value of the metric in one variant (NaN without units)."""

    @abstractmethod
    def moments(
        self, cols: MetricColumns, agg: Aggregates, cuped: CupedFit | None = None
    ) -> Moments:
        """Moments of the metric in one variant; with a ``CupedFit``, CUPED-adjusted."""

    @abstractmethod
    def compare(self, t: Moments, c: Moments, alpha: float) -> stats.Estimate:
        """Treatment ``t`` against control ``c``."""


class UnitMeanEstimator(MetricEstimator):
    """A mean of per-unit values, compared with Welch's t-test, optionally on CUPED-adjusted
    values (``proportion`` and ``mean`` differ only in the per-unit value)."""

    def value(self, cols: MetricColumns, agg: Aggregates) -> float:
        """The mean of the per-unit values."""
        if agg.count == 0:
            return math.nan
        return agg.mean[cols.y]

    def moments(
        self, cols: MetricColumns, agg: Aggregates, cuped: CupedFit | None = None
    ) -> Moments:
        """Mean and s²/n; CUPED: the adjusted mean is m_Y − θ·(m_X − overall m_X) and the
        adjusted per-unit variance Var(Y) − 2θ·cov(Y, X) + θ²·Var(X).

        References:
            Deng, Xu, Kohavi, Walker (2013). Improving the Sensitivity of Online Controlled
            Experiments by Utilizing Pre-Experiment Data. WSDM.
        """
        n = agg.count
        if n == 0:
            return Moments(math.nan, math.nan, math.nan, 0)
        mean, var = agg.mean[cols.y], agg.var[cols.y]
        if cuped is not None and cols.x:
            theta = cuped.theta
            mean -= theta * (agg.mean[cols.x] - cuped.mean_x)
            var = max(
                0.0, var - 2 * theta * agg.covariance(cols.y, cols.x) + theta**2 * agg.var[cols.x]
            )
        return Moments(mean, var / n, var, n)

    def compare(self, t: Moments, c: Moments, alpha: float) -> stats.Estimate:
        """Welch's t-test on the per-unit values (``stats.welch``)."""
        return stats.welch(t.value, t.unit_var, t.n, c.value, c.unit_var, c.n, alpha)

    @staticmethod
    def _columns(metric: Metric, i: int, value: str, pre: str, cuped: bool) -> MetricSql:
        """``value AS y<i>`` and, with CUPED, ``pre AS x<i>`` with the pair (y, x)."""
        exprs = [f"{value} AS y{i}"]
        pairs: list[tuple[str, str]] = []
        if cuped:
            exprs.append(f"{pre} AS x{i}")
            pairs.append((f"y{i}", f"x{i}"))
        return MetricSql(MetricColumns(metric, y=f"y{i}", x=f"x{i}" if cuped else ""), exprs, pairs)

    @staticmethod
    def _outcome(metric: Metric) -> str:
        if not metric.outcome:
            raise ValueError(f"{metric.kind} metric {metric.name} needs an outcome")
        return metric.outcome
