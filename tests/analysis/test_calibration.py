"""Calibration: the tests reject as often as they claim, and the intervals cover as claimed.

Simulations draw per-unit values with numpy, reduce them to the sufficient statistics the
engine would return, and run them through ``analysis.analyse``: the report's own code path,
without writing archives (fast). The acceptance bands are two-sided 99.9% binomial intervals,
so a correct implementation fails a run about once in a thousand seeds; the seeds are fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
from scipy import stats as st

from analysis import Aggregates, ReportOptions, analyse, stats
from analysis.sql import Cohort, QueryPlan, build_plan
from tests.analysis.analysis_testkit import aggregates_of, experiment

SIMS = 500
PLAN = build_plan(experiment(), "t")
PLAN_CUPED = build_plan(experiment(), "t", cuped_window=timedelta(days=14))
DAY0 = date(2026, 11, 20)
PAIRS = [("num2", "den2")]
Draw = Callable[[np.random.Generator, str, int], dict[str, np.ndarray]]


def band(p: float, n: int = SIMS) -> tuple[float, float]:
    """Two-sided 99.9% binomial band for the share of n trials with probability p."""
    lo, hi = st.binom.ppf([0.0005, 0.9995], n, p)
    return lo / n, hi / n


def units(
    rng: np.random.Generator, variant: str, n: int, lift: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-unit columns of the demo experiment: conversion, revenue, clicks and exposures."""
    boost = 1 + (lift if variant == "treatment" else 0.0)
    exposures = rng.integers(1, 5, n).astype(float)
    clicks = rng.poisson(0.3 * exposures * boost).astype(float)
    conv = (rng.random(n) < 0.1 * boost).astype(float)
    revenue = conv * rng.lognormal(3.0, 1.0, n)  # skewed, as revenue is
    return {"exposures": exposures, "y0": conv, "y1": revenue, "num2": clicks, "den2": exposures}


def run(
    draw: Draw, seed: int, plan: QueryPlan = PLAN, days: int = 1, n: int = 2000, **kw: object
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    cohorts = [
        Cohort(
            v,
            DAY0 + timedelta(days=d),
            aggregates_of(draw(rng, v, n // days), PAIRS + list(plan.cov_pairs)),
        )
        for d in range(days)
        for v in ("control", "treatment")
    ]
    return analyse(experiment(), plan, cohorts, **kw).to_dict()["metrics"]  # type: ignore[arg-type,no-any-return]


def test_aa_false_positive_rate_is_nominal_for_every_metric_kind() -> None:
    hits = np.zeros(3)
    for seed in range(SIMS):
        metrics = run(units, seed)
        hits += [m["comparisons"][0]["p_value"] < 0.05 for m in metrics]  # type: ignore[index]
    lo, hi = band(0.05)
    rates = hits / SIMS
    print(f"A/A share of p<0.05 over {SIMS} runs (conversion, revenue, clicks/exposure): {rates}")
    assert all(lo <= r <= hi for r in rates), (rates, (lo, hi))


def test_intervals_cover_a_known_lift() -> None:
    lift = 0.10
    # True differences: conversion 0.1 -> 0.11; revenue = conversion · E[lognormal(3, 1)];
    # clicks per exposure 0.3 -> 0.33.
    true_diff = [0.01, 0.01 * np.exp(3.5), 0.03]
    covered = np.zeros((3, 2))
    for seed in range(SIMS):
        for i, m in enumerate(run(lambda r, v, n: units(r, v, n, lift), 10_000 + seed, n=4000)):
            c = m["comparisons"][0]  # type: ignore[index]
            covered[i, 0] += c["lift_ci"][0] <= lift <= c["lift_ci"][1]
            covered[i, 1] += c["diff_ci"][0] <= true_diff[i] <= c["diff_ci"][1]
    rates = covered / SIMS
    print(
        f"coverage of 95% CIs, true lift 10% (rows: conversion, revenue, clicks/exposure; cols: lift, diff): {rates.tolist()}"
    )
    lo, hi = band(0.95)
    assert ((lo <= rates) & (rates <= hi)).all(), (rates, (lo, hi))


def test_always_valid_p_values_keep_the_error_rate_under_daily_peeking() -> None:
    sims, days = 200, 10
    seq_hits = naive_hits = 0
    opts = ReportOptions(sequential_tau=0.2)
    for seed in range(sims):
        rng = np.random.default_rng(20_000 + seed)
        cohorts = [
            Cohort(v, DAY0 + timedelta(days=d), aggregates_of(units(rng, v, 300), PAIRS))
            for d in range(days)
            for v in ("control", "treatment")
        ]
        rep = analyse(experiment(), PLAN, cohorts, options=opts)
        conv = rep.metrics[0].comparisons[0]
        assert conv.p_value_sequential is not None
        seq_hits += conv.p_value_sequential < 0.05
        # naive peeking: stop at the first day whose fixed-horizon p < 0.05
        t = c = Aggregates()
        naive = []
        for d in range(days):
            c, t = c + cohorts[2 * d].stats, t + cohorts[2 * d + 1].stats
            naive.append(
                stats.welch(
                    t.mean["y0"], t.var["y0"], t.count, c.mean["y0"], c.var["y0"], c.count
                ).p_value
            )
        naive_hits += min(naive) < 0.05
    print(
        f"A/A with {days} daily looks over {sims} runs: mSPRT rejects {seq_hits / sims:.3f}, naive peeking {naive_hits / sims:.3f}"
    )
    assert seq_hits / sims <= band(0.05, sims)[1]
    assert naive_hits / sims > 0.08  # the problem the option solves is real in this setting


def cuped_units(
    rng: np.random.Generator, variant: str, n: int, lift: float = 0.1
) -> dict[str, np.ndarray]:
    """Revenue that persists: this period's value is 0.8 x last period's plus noise."""
    pre = rng.gamma(2.0, 5.0, n)
    y = (0.8 * pre + rng.gamma(1.0, 2.0, n)) * (1 + (lift if variant == "treatment" else 0.0))
    cols = units(rng, variant, n)
    return cols | {"y1": y, "x1": pre, "y0": cols["y0"], "x0": (rng.random(n) < 0.1).astype(float)}


def test_cuped_narrows_the_interval_and_keeps_coverage() -> None:
    sims, lift = 300, 0.1
    widths, covered = np.zeros((2, sims)), np.zeros(2)
    for seed in range(sims):
        for j, plan in enumerate((PLAN, PLAN_CUPED)):
            opts = ReportOptions(cuped_window=timedelta(days=14) if j else None)
            rng = np.random.default_rng(30_000 + seed)
            cohorts = [
                Cohort(
                    v, DAY0, aggregates_of(cuped_units(rng, v, 1000), PAIRS + list(plan.cov_pairs))
                )
                for v in ("control", "treatment")
            ]
            c = analyse(experiment(), plan, cohorts, options=opts).metrics[1].comparisons[0]
            widths[j, seed] = c.lift_ci[1] - c.lift_ci[0]
            covered[j] += c.lift_ci[0] <= lift <= c.lift_ci[1]
    ratio = widths[1].mean() / widths[0].mean()
    print(f"CUPED: mean lift-CI width ratio {ratio:.3f}; coverage plain/CUPED {covered / sims}")
    assert ratio < 0.7
    lo, hi = band(0.95, sims)
    assert lo <= covered[1] / sims <= hi
