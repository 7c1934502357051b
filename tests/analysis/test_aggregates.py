"""Aggregates merge exactly, and the delta-method ratio variance matches its definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import Aggregates


def _agg(y: np.ndarray, x: np.ndarray) -> Aggregates:
    n = len(y)
    var = {"y": float(y.var(ddof=1)) if n > 1 else 0.0, "x": float(x.var(ddof=1)) if n > 1 else 0.0}
    cov = {("y", "x"): float(np.cov(y, x)[0, 1]) if n > 1 else 0.0}
    return Aggregates(n, {"y": float(y.mean()), "x": float(x.mean())}, var, cov)


values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(a=values, b=values)
def test_merging_two_groups_equals_aggregating_their_union(a: list[float], b: list[float]) -> None:
    ya, yb = np.array(a), np.array(b)
    xa, xb = ya**2 / 100, yb * 0.5 + 1
    merged = _agg(ya, xa) + _agg(yb, xb)
    whole = _agg(np.concatenate([ya, yb]), np.concatenate([xa, xb]))
    assert merged.count == whole.count
    for k in ("y", "x"):
        assert merged.mean[k] == pytest.approx(whole.mean[k], rel=1e-9, abs=1e-9)
        assert merged.var[k] == pytest.approx(whole.var[k], rel=1e-7, abs=1e-6)
    assert merged.cov[("y", "x")] == pytest.approx(whole.cov[("y", "x")], rel=1e-7, abs=1e-6)


def test_empty_is_the_identity_of_merging() -> None:
    a = _agg(np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 1.0]))
    assert a + Aggregates() is a and Aggregates() + a is a


def test_ratio_variance_is_the_delta_method_formula() -> None:
    rng = np.random.default_rng(0)
    den = rng.integers(1, 5, 500).astype(float)
    num = rng.poisson(den * 0.4).astype(float)
    agg = Aggregates(
        500,
        {"num": num.mean(), "den": den.mean()},
        {"num": num.var(ddof=1), "den": den.var(ddof=1)},
        {("num", "den"): np.cov(num, den)[0, 1]},
    )
    r = num.sum() / den.sum()
    expected = (num.var(ddof=1) - 2 * r * np.cov(num, den)[0, 1] + r**2 * den.var(ddof=1)) / (
        500 * den.mean() ** 2
    )
    assert agg.ratio_var("num", "den") == pytest.approx(expected)
    assert agg.sum("num") == pytest.approx(num.sum())
