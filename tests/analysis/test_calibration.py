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

from analysis import ReportOptions, analyse
from analysis.sql import Look, QueryPlan, build_plan
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
    draw: Draw, seed: int, plan: QueryPlan = PLAN, n: int = 2000, **kw: object
) -> list[dict[str, object]]:
    """One experiment looked at once (a single look holding every unit): its metrics' JSON."""
    rng = np.random.default_rng(seed)
    looks = [
        Look(v, DAY0, aggregates_of(draw(rng, v, n), PAIRS + list(plan.cov_pairs)))
        for v in ("control", "treatment")
    ]
    return analyse(experiment(), plan, looks, **kw).to_dict()["metrics"]  # type: ignore[arg-type,no-any-return]


def peeked_looks(rng: np.random.Generator, days: int, n_per_day: int) -> list[Look]:
    """An A/A experiment as each day's report sees it: units arrive, act and convert over time.

    Per variant, ``n_per_day`` units enrol on each of ``days`` days (at a uniform time of day);
    each comes back 0–3 more times (exponential gaps, mean 1 day), clicking Poisson(0.3) per
    visit; one in ten buys once, after an exponential delay (mean 2 days), for a lognormal
    amount. Look k holds the units enrolled by the end of day k, with the visits, clicks and
    purchases before that moment only.
    """
    looks: list[Look] = []
    n = n_per_day * days
    for v in ("control", "treatment"):
        start = np.repeat(np.arange(days), n_per_day) + rng.random(n)
        visits = start[:, None] + np.cumsum(
            np.c_[np.zeros(n), rng.exponential(1.0, (n, 3))], axis=1
        )
        visits[np.arange(4)[None, :] >= rng.integers(1, 5, n)[:, None]] = np.inf  # 1–4 visits
        clicks = rng.poisson(0.3, (n, 4))
        bought_at = np.where(rng.random(n) < 0.1, start + rng.exponential(2.0, n), np.inf)
        amount = rng.lognormal(3.0, 1.0, n)
        for k in range(days):
            end = k + 1.0
            inside = start < end
            seen = visits[inside] < end
            exposures = seen.sum(axis=1).astype(float)
            conv = (bought_at[inside] < end).astype(float)
            cols = {
                "exposures": exposures,
                "y0": conv,
                "y1": conv * amount[inside],
                "num2": (clicks[inside] * seen).sum(axis=1).astype(float),
                "den2": exposures,
            }
            looks.append(Look(v, DAY0 + timedelta(days=k), aggregates_of(cols, PAIRS)))
    return looks


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
    """A/A, 10 daily looks that see only their past: mSPRT ≤ 5%, naive peeking far above."""
    sims, days = 200, 10
    seq_hits, naive_hits = np.zeros(3), np.zeros(3)
    opts = ReportOptions(sequential_tau=0.2)
    for seed in range(sims):
        rep = analyse(
            experiment(), PLAN, peeked_looks(np.random.default_rng(20_000 + seed), days, 300),
            options=opts,
        )  # fmt: skip
        assert len(rep.daily) == days
        for i, m in enumerate(rep.metrics):
            c = m.comparisons[0]
            assert c.p_value_sequential is not None
            seq_hits[i] += c.p_value_sequential < 0.05
            # naive peeking: stop at the first look whose fixed-horizon p < 0.05
            naive_hits[i] += min(d.estimates[m.name]["treatment"].p_value for d in rep.daily) < 0.05
    print(
        f"A/A with {days} daily looks over {sims} runs (conversion, revenue, clicks/exposure): "
        f"mSPRT rejects {(seq_hits / sims).tolist()}, naive peeking {(naive_hits / sims).tolist()}"
    )
    assert (seq_hits / sims <= band(0.05, sims)[1]).all()
    assert (naive_hits / sims > 0.08).all()  # the problem the option solves is real here


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
            looks = [
                Look(
                    v, DAY0, aggregates_of(cuped_units(rng, v, 1000), PAIRS + list(plan.cov_pairs))
                )
                for v in ("control", "treatment")
            ]
            c = analyse(experiment(), plan, looks, options=opts).metrics[1].comparisons[0]
            widths[j, seed] = c.lift_ci[1] - c.lift_ci[0]
            covered[j] += c.lift_ci[0] <= lift <= c.lift_ci[1]
    ratio = widths[1].mean() / widths[0].mean()
    print(f"CUPED: mean lift-CI width ratio {ratio:.3f}; coverage plain/CUPED {covered / sims}")
    assert ratio < 0.7
    lo, hi = band(0.95, sims)
    assert lo <= covered[1] / sims <= hi
