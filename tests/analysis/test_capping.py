"""Capped mean metrics: the SQL winsorises exactly like numpy, and the estimate stays honest.

``cap: {percentile: P}`` replaces each unit's total y by min(y, c), with c the P-th percentile
(linear interpolation, numpy's default) of the totals of every unit in the report, all arms
pooled. The capped metric estimates E[min(Y, c)]: a different, smaller quantity than E[Y], so
its lift is not the uncapped lift. The simulation shows both sides: the interval is much
narrower and covers the capped estimand's true lift; under a multiplicative effect the capped
lift keeps the sign of the uncapped one but is smaller (about half of it in this
very heavy-tailed setting).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as st

from analysis import analyse, build_report
from analysis.sql import Look, build_plan
from tests.analysis.analysis_testkit import (
    EXPERIMENT_YAML,
    T0,
    ArchiveWriter,
    aggregates_of,
    experiment,
)

CAPPED_YAML = EXPERIMENT_YAML.replace(
    "{name: revenue, kind: mean, outcome: purchase}",
    "{name: revenue, kind: mean, outcome: purchase, cap: {percentile: 90}}",
)


def test_capped_values_match_numpy_percentile_over_the_events(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    w = ArchiveWriter(tmp_path)
    totals: dict[str, dict[str, float]] = {"control": {}, "treatment": {}}
    for u in range(300):
        v = "control" if u % 2 else "treatment"
        t = T0 + timedelta(hours=int(rng.integers(48)))
        w.exposure(f"u{u}", v, t)
        w.exposure(f"u{u}", v, t + timedelta(hours=1))
        # a purchase before the first exposure never counts (nor is it capped in)
        w.outcome(f"u{u}", "purchase", t - timedelta(minutes=1), 1e6)
        total = 0.0
        for k in range(int(rng.poisson(0.8))):
            value = float(rng.pareto(1.5) * 20)  # heavy tail: the cap bites
            w.outcome(f"u{u}", "purchase", t + timedelta(minutes=5 + k), value)
            total += value
        totals[v][f"u{u}"] = total
    root = w.write()
    rep = build_report(experiment(CAPPED_YAML), root)
    pooled = np.array([y for arm in totals.values() for y in arm.values()])
    cap = float(np.percentile(pooled, 90))
    assert 0 < cap < pooled.max()  # the cap is inside the data: some units are cut
    revenue = next(m for m in rep.metrics if m.name == "revenue")
    assert revenue.cap == 90
    for v, arm in totals.items():
        capped = np.minimum(np.array(list(arm.values())), cap)
        assert revenue.values[v] == pytest.approx(float(capped.mean()), rel=1e-12)
    (c,) = revenue.comparisons
    t_vals = np.minimum(list(totals["treatment"].values()), cap)
    c_vals = np.minimum(list(totals["control"].values()), cap)
    expected = st.ttest_ind(t_vals, c_vals, equal_var=False)
    assert c.p_value == pytest.approx(float(expected.pvalue), rel=1e-9)
    # the uncapped experiment reads the raw totals
    raw = next(m for m in build_report(experiment(), root).metrics if m.name == "revenue")
    assert raw.values["control"] == pytest.approx(
        float(np.mean(list(totals["control"].values()))), rel=1e-12
    )
    assert raw.values["control"] > revenue.values["control"]


def test_cap_is_only_on_the_capped_metric_and_in_the_json() -> None:
    plan = build_plan(experiment(CAPPED_YAML), "t", dialect="bigquery")
    assert plan.sql.count("PERCENTILE_CONT(") == 1
    # each look caps at the percentile of its own units (the last look: every unit)
    assert "PERCENTILE_CONT(CAST(sum_0 AS FLOAT64), 0.9) OVER (PARTITION BY look)" in plan.sql
    assert "QUANTILE_CONT(" in build_plan(experiment(CAPPED_YAML), "t").sql
    assert "QUANTILE" not in build_plan(experiment(), "t").sql


# --- calibration: heavy-tailed revenue with a multiplicative effect ---------------------------

SIMS, N, K, CONV, MU, SIGMA, P = 400, 4000, 1.10, 0.1, 3.0, 2.0, 99.0


def _units(rng: np.random.Generator, variant: str, n: int) -> dict[str, np.ndarray]:
    """Revenue = purchase · lognormal(μ, σ); treatment multiplies every purchase value by K."""
    scale = K if variant == "treatment" else 1.0
    conv = (rng.random(n) < CONV).astype(float)
    exposures = np.ones(n)
    return {
        "exposures": exposures,
        "y0": conv,
        "y1": conv * scale * rng.lognormal(MU, SIGMA, n),
        "num2": exposures,
        "den2": exposures,
    }


def _capped_truth() -> tuple[float, float]:
    """The population cap c* (P-th percentile of the 50/50 pooled arms) and the true lift of
    E[min(Y, c*)], in closed form for Y = B·V, B ~ Bernoulli(CONV), V ~ lognormal."""

    def pooled_cdf(c: float) -> float:
        z = (math.log(c) - MU) / SIGMA
        return (1 - CONV) + CONV * 0.5 * (st.norm.cdf(z) + st.norm.cdf(z - math.log(K) / SIGMA))

    c = optimize.brentq(lambda x: pooled_cdf(x) - P / 100, 1e-6, 1e9, xtol=1e-12)

    def capped_mean(mu: float) -> float:  # E[min(V, c)] for V ~ lognormal(mu, SIGMA)
        z = (math.log(c) - mu) / SIGMA
        return CONV * (
            math.exp(mu + SIGMA**2 / 2) * st.norm.cdf(z - SIGMA) + c * (1 - st.norm.cdf(z))
        )

    return c, capped_mean(MU + math.log(K)) / capped_mean(MU) - 1


def test_capping_narrows_the_interval_and_covers_the_capped_truth() -> None:
    plain, capped = (
        experiment(),
        experiment(CAPPED_YAML.replace("percentile: 90", f"percentile: {P}")),
    )
    plan_plain, plan_capped = build_plan(plain, "t"), build_plan(capped, "t")
    cap_star, capped_lift = _capped_truth()
    widths = np.zeros((2, SIMS))
    cover_capped = cover_raw_truth_plain = cover_raw_truth_capped = 0
    for seed in range(SIMS):
        rng = np.random.default_rng(50_000 + seed)
        arms = {v: _units(rng, v, N) for v in ("control", "treatment")}
        pairs = [("num2", "den2")]
        looks = [Look(v, date(2026, 11, 20), aggregates_of(a, pairs)) for v, a in arms.items()]
        cap = np.percentile(np.concatenate([a["y1"] for a in arms.values()]), P)
        cut = [
            Look(v, date(2026, 11, 20), aggregates_of(a | {"y1": np.minimum(a["y1"], cap)}, pairs))
            for v, a in arms.items()
        ]
        c_plain = analyse(plain, plan_plain, looks).metrics[1].comparisons[0]
        c_cap = analyse(capped, plan_capped, cut).metrics[1].comparisons[0]
        widths[0, seed] = c_plain.lift_ci[1] - c_plain.lift_ci[0]
        widths[1, seed] = c_cap.lift_ci[1] - c_cap.lift_ci[0]
        cover_capped += c_cap.lift_ci[0] <= capped_lift <= c_cap.lift_ci[1]
        cover_raw_truth_plain += c_plain.lift_ci[0] <= K - 1 <= c_plain.lift_ci[1]
        cover_raw_truth_capped += c_cap.lift_ci[0] <= K - 1 <= c_cap.lift_ci[1]
    ratio = widths[1].mean() / widths[0].mean()
    print(
        f"\ncap at P{P:g} (c* = {cap_star:.1f}); uncapped true lift {K - 1:.2%}, capped estimand's "
        f"true lift {capped_lift:.2%}; lift-CI width capped/uncapped {ratio:.3f}; coverage: capped "
        f"CI of capped truth {cover_capped / SIMS:.3f}, uncapped CI of {K - 1:.0%} "
        f"{cover_raw_truth_plain / SIMS:.3f}, capped CI of {K - 1:.0%} {cover_raw_truth_capped / SIMS:.3f}"
    )
    assert ratio < 0.6
    lo, hi = st.binom.ppf([0.0005, 0.9995], SIMS, 0.95) / SIMS
    assert lo <= cover_capped / SIMS <= hi
    # honest about the estimand: same sign as the uncapped lift, but smaller (here about half:
    # the heaviest 1% carries much of a sigma=2 lognormal's mean, and of the effect)
    assert 0 < capped_lift < K - 1
