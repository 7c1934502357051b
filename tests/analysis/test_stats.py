"""The formulas of analysis.stats against scipy and independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from analysis import stats


def _moments(x: np.ndarray) -> tuple[float, float, int]:
    return float(x.mean()), float(x.var(ddof=1)), len(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_matches_scipy_ttest_ind_unequal_var(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.normal(10.5, 3.0, 400)
    c = rng.normal(10.0, 1.5, 250)
    est = stats.welch(*_moments(t), *_moments(c), alpha=0.05)
    ref = st.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert est.diff == pytest.approx(t.mean() - c.mean())
    assert est.diff_ci == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_welch_interval_level_follows_alpha() -> None:
    rng = np.random.default_rng(3)
    t, c = rng.normal(1, 1, 100), rng.normal(0, 2, 120)
    est = stats.welch(*_moments(t), *_moments(c), alpha=0.1)
    ci = st.ttest_ind(t, c, equal_var=False).confidence_interval(0.9)
    assert est.diff_ci == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_welch_textbook_values() -> None:
    # Independently computed by hand: m_t=12, s²_t=4, n_t=10; m_c=10, s²_c=9, n_c=15.
    # se = sqrt(0.4 + 0.6) = 1; df = 1 / (0.16/9 + 0.36/14) = 22.99...; t = 2.
    est = stats.welch(12.0, 4.0, 10, 10.0, 9.0, 15)
    df = 1 / (0.16 / 9 + 0.36 / 14)
    assert est.diff_se == pytest.approx(1.0)
    assert est.p_value == pytest.approx(2 * st.t.sf(2.0, df))
    half = st.t.ppf(0.975, df)
    assert est.diff_ci == pytest.approx((2 - half, 2 + half))
    # lift = 0.2; se = sqrt(4/(10·100) + 144·9/(15·10⁴)) = sqrt(0.004 + 0.00864)
    assert est.lift == pytest.approx(0.2)
    se = math.sqrt(0.004 + 0.00864)
    z = st.norm.ppf(0.975)
    assert est.lift_ci == pytest.approx((0.2 - z * se, 0.2 + z * se))


def test_lift_se_matches_simulated_spread_of_the_ratio_of_means() -> None:
    rng = np.random.default_rng(4)
    n_t, n_c = 2000, 3000
    lifts = []
    for _ in range(2000):
        t, c = rng.exponential(1.2, n_t), rng.exponential(1.0, n_c)
        lifts.append(t.mean() / c.mean() - 1)
    se = stats.lift_se(1.2, 1.44 / n_t, 1.0, 1.0 / n_c)
    assert np.std(lifts) == pytest.approx(se, rel=0.06)


def test_small_or_degenerate_samples_give_nan_not_errors() -> None:
    assert math.isnan(stats.welch(1, 0, 1, 1, 0, 5).p_value)
    same = stats.welch(1, 0, 10, 1, 0, 10)
    assert same.p_value == 1.0 and same.diff_ci == (0.0, 0.0)
    zero_control = stats.welch(1, 1, 10, 0, 0.0, 10)
    assert math.isnan(zero_control.lift) and math.isnan(zero_control.lift_ci[0])


def test_normal_comparison_for_ratio_metrics() -> None:
    est = stats.normal_comparison(0.55, 0.0004, 0.5, 0.0005, alpha=0.05)
    se = math.sqrt(0.0009)
    assert est.diff == pytest.approx(0.05)
    assert est.p_value == pytest.approx(2 * st.norm.sf(0.05 / se))
    assert est.diff_ci == pytest.approx((0.05 - 1.959964 * se, 0.05 + 1.959964 * se), rel=1e-6)
    lift_se = math.sqrt(0.0004 / 0.25 + 0.3025 * 0.0005 / 0.0625)
    assert est.lift_ci == pytest.approx(
        (0.1 - 1.959964 * lift_se, 0.1 + 1.959964 * lift_se), rel=1e-6
    )


def test_srm_matches_scipy_chisquare_against_weights() -> None:
    p = stats.srm_p_value({"a": 5100, "b": 4900, "c": 10000}, {"a": 0.25, "b": 0.25, "c": 0.5})
    assert p == pytest.approx(st.chisquare([5100, 4900, 10000], [5000, 5000, 10000]).pvalue)
    assert stats.srm_p_value({"a": 5000, "b": 4000}, {"a": 0.5, "b": 0.5}) < 1e-20


def test_srm_flags_units_in_a_variant_without_weight() -> None:
    assert stats.srm_p_value({"a": 10, "b": 10, "ghost": 1}, {"a": 0.5, "b": 0.5}) == 0.0
    assert stats.srm_p_value({"a": 10, "b": 10}, {"a": 0.5, "b": 0.5, "off": 0.0}) == 1.0


def test_holm_known_values() -> None:
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
    assert stats.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert stats.holm([0.4, 0.9]) == pytest.approx([0.8, 0.9])
    out = stats.holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_msprt_matches_the_closed_form() -> None:
    v, tau2, d = 0.01, 0.04, 0.3
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
    assert stats.msprt_p_value(d, v, tau2) == pytest.approx(1 / lam)
    assert stats.msprt_p_value(0.0, v, tau2) == 1.0


def test_cuped_theta_is_the_regression_slope() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=1000)
    y = 2.0 * x + rng.normal(size=1000)
    theta = stats.cuped_theta(float(np.cov(y, x)[0, 1]), float(x.var(ddof=1)))
    assert theta == pytest.approx(np.polyfit(x, y, 1)[0])
    assert stats.cuped_theta(1.0, 0.0) == 0.0


def test_mde_of_a_known_design() -> None:
    # 80% power, alpha 0.05: (1.959964 + 0.841621)·se
    assert stats.mde(0.01) == pytest.approx(0.02801585, rel=1e-6)


def test_normal_score_inverts_the_two_sided_normal_p_and_shrinks_welch_t() -> None:
    for z in (0.0, 0.5, 1.96, 4.0, 12.0):
        assert stats.normal_score(float(2 * st.norm.sf(z))) == pytest.approx(z, abs=1e-9)
    # a Welch t of 5 on 8 degrees of freedom is weaker evidence than a z of 5
    p_t = float(2 * st.t.sf(5.0, 8))
    assert 3.0 < stats.normal_score(p_t) < 5.0
    assert stats.normal_score(0.0) == math.inf and math.isnan(stats.normal_score(math.nan))
