"""Sufficient statistics of per-unit values, as a mergeable value object.

The engine (DuckDB, BigQuery) reduces per-unit values to, per group: the count, the mean and
sample variance of each column, and sample covariances of chosen column pairs. ``Aggregates``
holds them and merges two disjoint groups exactly (``a + b``), so groups of units add up to their union
without going back to the data.

References:
    Chan, Golub, LeVeque (1979). Updating formulae and a pairwise algorithm for computing
    sample variances. Stanford CS report STAN-CS-79-773.
    tea-tasting, ``tea_tasting/aggr.py`` (the same value-object design).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Count, means, sample variances (ddof=1) and sample covariances of per-unit columns.

    A variance or covariance of a group of fewer than two units is 0 (its sum of squared
    deviations is 0), which keeps merging exact.
    """

    count: int = 0
    mean: Mapping[str, float] = field(default_factory=dict)
    var: Mapping[str, float] = field(default_factory=dict)
    cov: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __add__(self, other: Aggregates) -> Aggregates:
        """Merge two disjoint groups of units (Chan et al.'s pairwise update).

        With n = n1 + n2 and d = m2 − m1: m = m1 + d·n2/n;
        M2 = M2₁ + M2₂ + d²·n1·n2/n (M2 = var·(n−1)); likewise for co-moments with d_x·d_y.
        """
        if not isinstance(other, Aggregates):
            return NotImplemented
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n1, n2 = self.count, other.count
        n = n1 + n2
        delta = {k: other.mean[k] - self.mean[k] for k in self.mean}
        mean = {k: self.mean[k] + delta[k] * n2 / n for k in self.mean}
        var = {
            k: (self.var[k] * (n1 - 1) + other.var[k] * (n2 - 1) + delta[k] ** 2 * n1 * n2 / n)
            / (n - 1)
            for k in self.var
        }
        cov = {
            (a, b): (
                self.cov[(a, b)] * (n1 - 1)
                + other.cov[(a, b)] * (n2 - 1)
                + delta[a] * delta[b] * n1 * n2 / n
            )
            / (n - 1)
            for (a, b) in self.cov
        }
        return Aggregates(n, mean, var, cov)

    def sum(self, column: str) -> float:
        """Σ of a column over the group's units: count · mean."""
        return self.count * self.mean[column] if self.count else 0.0

    def covariance(self, a: str, b: str) -> float:
        """Sample covariance of columns ``a`` and ``b`` (either order; var when a == b)."""
        if a == b:
            return self.var[a]
        return self.cov[(a, b)] if (a, b) in self.cov else self.cov[(b, a)]

    def ratio_var(self, num: str, den: str) -> float:
        """Variance of R = Σnum/Σden by the delta method.

        Var(R) ≈ (s²_num − 2R·cov(num, den) + R²·s²_den) / (n·mean_den²).

        References:
            Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD.
        """
        m_den = self.mean[den]
        # Fewer than two units have no sample variance (the 0 stored for merging is not one):
        # a variance of 0 would make one unit look perfectly precise (p ~ 1e-86 against it).
        if self.count < 2 or m_den == 0:
            return math.nan
        r = self.mean[num] / m_den
        return (self.var[num] - 2 * r * self.covariance(num, den) + r * r * self.var[den]) / (
            self.count * m_den * m_den
        )
