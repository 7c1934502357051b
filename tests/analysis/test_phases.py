"""analysis.phases: kept buckets, per-phase SRM and the stratified estimate.

The figures are checked against independent computations over per-unit numpy arrays (scipy
for the tests, plain numpy for the stratified formulas), and calibrated by simulating a ramp
with a known truth. Acceptance bands are two-sided 99.9% binomial intervals with fixed seeds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from analysis import Aggregates, stats
from analysis.metrics import compare, cuped_fit, moments
from analysis.phases import (
    Phase,
    PhasePlan,
    StratifiedEstimate,
    phase_srm,
    plan_phases,
    stratified_compare,
)
from analysis.sql import MetricColumns
from experiments import BUCKETS, Metric, assign, bucket
from tests.analysis.analysis_testkit import aggregates_of

T0 = datetime(2026, 11, 20, tzinfo=UTC)
CONV = MetricColumns(Metric(name="conversion", kind="proportion", outcome="purchase"), y="y")
REVENUE = MetricColumns(Metric(name="revenue", kind="mean", outcome="purchase"), y="y", x="x")
CPE = MetricColumns(
    Metric(name="cpe", kind="ratio", numerator="click", denominator="exposures"),
    num="num",
    den="den",
)
Arrays = dict[str, np.ndarray]
Reference = tuple[float, tuple[float, float], float, tuple[float, float], float]


def phase(pid: str, start_h: float, end_h: float, *weights: tuple[str, float]) -> Phase:
    """A phase served from hour ``start_h`` until a minute before hour ``end_h``."""
    end = T0 + timedelta(hours=end_h) - timedelta(minutes=1)
    return Phase(pid, T0 + timedelta(hours=start_h), end, tuple(weights))


def ct(c: float, t: float) -> tuple[tuple[str, float], tuple[str, float]]:
    return ("control", c), ("treatment", t)


def agg(cols: Arrays) -> Aggregates:
    pairs = [p for p in (("y", "x"), ("num", "den")) if set(p) <= set(cols)]
    return aggregates_of(cols, pairs)  # type: ignore[no-any-return]


def band(p: float, n: int) -> tuple[float, float]:
    """Two-sided 99.9% binomial band for the share of n trials with probability p."""
    lo, hi = st.binom.ppf([0.0005, 0.9995], n, p)
    return lo / n, hi / n


# --- phases and kept buckets ----------------------------------------------------------------


def test_variant_of_agrees_with_the_gateways_assignment() -> None:
    p = phase("a", 0, 1, ("control", 3), ("treatment", 1.5), ("t2", 0.5))
    keys, weights = ["control", "treatment", "t2"], [3, 1.5, 0.5]
    for i in range(300):
        unit = f"user-{i}"
        assert p.variant_of(bucket("salt", unit)) == assign("salt", unit, keys, weights)


def test_ramp_90_10_to_50_50_excludes_units_moved_from_control() -> None:
    plan = plan_phases([phase("b", 10, 20, *ct(50, 50)), phase("a", 0, 10, *ct(90, 10))])
    first, second = plan.phases  # in order of start
    assert first.phase.id == "a" and first.against == ("b",)
    # Buckets [5000, 9000) are control in phase a and treatment in phase b: out.
    assert first.kept == {"control": ((0, 5000),), "treatment": ((9000, 10000),)}
    assert first.expected_share == pytest.approx({"control": 5 / 6, "treatment": 1 / 6})
    assert first.excluded_buckets == 4000
    # Phase a ended before b started: b's units never see a's allocation.
    assert second.against == () and second.excluded_buckets == 0
    assert second.kept == {"control": ((0, 5000),), "treatment": ((5000, 10000),)}
    assert plan.kept_rows() == (
        ("a", "control", 0, 5000),
        ("a", "treatment", 9000, 10000),
        ("b", "control", 0, 5000),
        ("b", "treatment", 5000, 10000),
    )


@pytest.mark.parametrize(("outer", "inner"), [((50, 50), (90, 10)), ((90, 10), (50, 50))])
def test_a_recurring_allocation_constrains_the_phase_it_spans(
    outer: tuple[float, float], inner: tuple[float, float]
) -> None:
    # outer -> inner -> outer: the outer allocation is one phase (same id) spanning the inner.
    plan = plan_phases([phase("outer", 0, 30, *ct(*outer)), phase("inner", 10, 20, *ct(*inner))])
    for keep in plan.phases:
        assert keep.kept == {"control": ((0, 5000),), "treatment": ((9000, 10000),)}
        assert keep.excluded_buckets == 4000
    assert plan["outer"].against == ("inner",) and plan["inner"].against == ("outer",)


def test_a_traffic_only_change_excludes_nothing() -> None:
    plan = plan_phases([phase("a", 0, 10, *ct(70, 30)), phase("b", 5, 20, *ct(70, 30))])
    for keep in plan.phases:
        assert keep.excluded_buckets == 0
        assert keep.kept == {"control": ((0, 7000),), "treatment": ((7000, 10000),)}
        assert keep.expected_share == pytest.approx({"control": 0.7, "treatment": 0.3})


def test_replicas_still_serving_the_old_phase_do_not_constrain_the_new_one() -> None:
    a = Phase("a", T0, T0 + timedelta(hours=10, seconds=5), ct(90, 10))  # stale for 5 s
    b = Phase("b", T0 + timedelta(hours=10), T0 + timedelta(hours=20), ct(50, 50))
    plan = plan_phases([a, b], overlap=timedelta(minutes=1))
    assert plan["b"].excluded_buckets == 0 and plan["b"].against == ()
    assert plan["a"].kept == {"control": ((0, 5000),), "treatment": ((9000, 10000),)}
    # ... with a tolerance: with none, the stale seconds count as serving a again
    assert plan_phases([a, b], overlap=timedelta(0))["b"].against == ("a",)
    # a later phase always constrains an earlier one, however soon it came
    soon = Phase("b", T0 + timedelta(seconds=30), T0 + timedelta(minutes=2), ct(50, 50))
    early = Phase("a", T0, T0 + timedelta(seconds=31), ct(90, 10))
    assert plan_phases([early, soon])["a"].against == ("b",)


def test_an_added_arm_owns_nothing_before_it_exists_and_moves_buckets_after() -> None:
    plan = plan_phases(
        [
            phase("a", 0, 10, *ct(50, 50), ("t2", 0)),
            phase("b", 10, 20, *ct(40, 40), ("t2", 20)),
        ]
    )
    assert plan["a"].kept == {
        "control": ((0, 4000),),
        "treatment": ((5000, 8000),),
        "t2": (),
    }
    assert plan["a"].expected_share == pytest.approx(
        {"control": 4 / 7, "treatment": 3 / 7, "t2": 0}
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [phase("a", 0, 1, *ct(1, 1)), phase("a", 2, 3, *ct(1, 1))], "repeated: \\['a'\\]"),
        (lambda: [phase("a", 0, 1, *ct(-1, 2))], "phase a: weights must not be negative"),
        (lambda: [phase("a", 0, 1, *ct(0, 0))], "phase a: weights must sum to a positive"),
        (lambda: [phase("a", 0, 1, ("c", 1), ("c", 1))], "phase a: weights need distinct"),
        (lambda: [phase("a", 2, 1, *ct(1, 1))], "phase a: end .* is before start"),
    ],
)
def test_bad_phases_are_refused_with_a_message_naming_the_phase(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_phases(make())  # type: ignore[operator]


ALLOCATION = hs.lists(
    hs.sampled_from(["control", "treatment", "t2"]), min_size=1, unique=True
).flatmap(
    lambda keys: (
        hs.lists(hs.integers(0, 10), min_size=len(keys), max_size=len(keys))
        .filter(sum)
        .map(lambda ws: tuple(zip(keys, ws, strict=True)))
    )
)


def _variant_per_bucket(p: Phase) -> np.ndarray:
    names = np.array(p.variants, dtype=object)
    return names[np.searchsorted(np.array(p.bounds), np.arange(BUCKETS), side="right")]


@settings(max_examples=150, deadline=None)
@given(
    pool=hs.lists(ALLOCATION, min_size=1, max_size=3),
    picks=hs.lists(hs.integers(0, 2), min_size=1, max_size=6),
)
def test_kept_buckets_are_exactly_those_that_never_change_variant_later(
    pool: list[tuple[tuple[str, float], ...]], picks: list[int]
) -> None:
    # A history of one-hour segments, each serving an allocation of the pool; an allocation
    # served again keeps its id, so a phase runs from its first segment to its last.
    segments = [pool[i % len(pool)] for i in picks]
    first = {w: segments.index(w) for w in segments}
    last = {w: len(segments) - 1 - segments[::-1].index(w) for w in segments}
    phases = {w: phase(f"p{i}", first[w], last[w] + 1, *w) for i, w in enumerate(first)}
    plan = plan_phases(phases.values())
    served = [_variant_per_bucket(phases[w]) for w in segments]
    for w, p in phases.items():
        keep = plan[p.id]
        # A unit enrolled in p's first segment may be served any segment from then on.
        later = np.array(served[first[w] :])
        stable = (later == later[0]).all(axis=0)
        kept = np.zeros(BUCKETS, dtype=bool)
        for v, ranges in keep.kept.items():
            flat = [b for r in ranges for b in r]
            assert flat == sorted(flat) and len(set(flat)) == len(flat)  # disjoint, merged
            for lo, hi in ranges:
                assert lo < hi
                # Sound: every kept bucket maps to v in every later segment.
                assert (later[:, lo:hi] == v).all()
                kept[lo:hi] = True
        # Complete: a bucket that keeps its variant in every later segment is never excluded.
        assert (kept == stable).all()
        assert keep.excluded_buckets == BUCKETS - kept.sum()
        if kept.any():
            sizes = {v: sum(hi - lo for lo, hi in rs) for v, rs in keep.kept.items()}
            assert keep.expected_share == pytest.approx(
                {v: s / kept.sum() for v, s in sizes.items()}
            )


# --- per-phase SRM ---------------------------------------------------------------------------


def _ramp() -> PhasePlan:
    return plan_phases([phase("a", 0, 10, *ct(90, 10)), phase("b", 10, 20, *ct(50, 50))])


def test_phase_srm_tests_each_phase_against_its_kept_shares_with_holm() -> None:
    srm = phase_srm(
        _ramp(),
        {"a": {"control": 5000, "treatment": 1150}, "b": {"control": 5000, "treatment": 5100}},
    )
    p_a = st.chisquare([5000, 1150], [6150 * 5 / 6, 6150 / 6]).pvalue
    p_b = st.chisquare([5000, 5100]).pvalue
    assert [s.phase for s in srm] == ["a", "b"]
    assert srm[0].p_value == pytest.approx(p_a) and srm[1].p_value == pytest.approx(p_b)
    low, high = sorted([p_a, p_b])
    adjusted = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), high)}
    assert srm[0].p_value_adjusted == pytest.approx(adjusted[p_a])
    assert srm[1].p_value_adjusted == pytest.approx(adjusted[p_b])
    assert srm[0].p_value < 0.001  # 1150 treatment units where 1025 are expected


def test_phase_without_units_is_skipped_and_not_counted_by_holm() -> None:
    srm = phase_srm(_ramp(), {"b": {"control": 5000, "treatment": 5200}})
    assert math.isnan(srm[0].p_value) and math.isnan(srm[0].p_value_adjusted)
    assert srm[0].units == {"control": 0, "treatment": 0}
    assert (
        srm[1].p_value_adjusted
        == srm[1].p_value
        == pytest.approx(st.chisquare([5000, 5200]).pvalue)
    )


def test_units_of_an_unknown_arm_flag_the_phase() -> None:
    srm = phase_srm(_ramp(), {"b": {"control": 500, "treatment": 500, "__holdout__": 40}})
    assert srm[1].p_value == 0.0


def test_units_of_an_unknown_phase_are_refused() -> None:
    with pytest.raises(ValueError, match=r"units for phases not in the plan: \['zz'\]"):
        phase_srm(_ramp(), {"zz": {"control": 1}})


# --- the stratified estimate against independent computations -------------------------------


def _normal(rng: np.random.Generator, n: int, mu: float, sd: float) -> Arrays:
    x = rng.normal(mu, sd, n)
    return {"y": x + rng.normal(0.3, sd, n), "x": x}


def _ratio(rng: np.random.Generator, n: int, rate: float) -> Arrays:
    den = rng.integers(1, 6, n).astype(float)
    return {"num": rng.poisson(rate * den).astype(float), "den": den}


def _stratify(
    per_phase: list[tuple[int, int, float, float, float, float]], alpha: float = 0.05
) -> Reference:
    """diff, CI, lift, lift CI, p from per phase (n_c, n_t, m_c, V_c, m_t, V_t), in numpy."""
    arr = np.array(per_phase, dtype=float)
    n = arr[:, 0] + arr[:, 1]
    w = n / n.sum()
    m_c, v_c = (w * arr[:, 2]).sum(), (w**2 * arr[:, 3]).sum()
    m_t, v_t = (w * arr[:, 4]).sum(), (w**2 * arr[:, 5]).sum()
    z = st.norm.ppf(1 - alpha / 2)
    diff, se = m_t - m_c, np.sqrt(v_t + v_c)
    lift = diff / m_c
    lift_se = np.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)
    p = 2 * st.norm.sf(abs(diff) / se)
    return diff, (diff - z * se, diff + z * se), lift, (lift - z * lift_se, lift + z * lift_se), p


def _assert_matches(est: StratifiedEstimate, ref: Reference) -> None:
    diff, ci, lift, lift_ci, p = ref
    assert est.diff == pytest.approx(diff, rel=1e-9)
    assert est.diff_ci == pytest.approx(ci, rel=1e-9)
    assert est.lift == pytest.approx(lift, rel=1e-9)
    assert est.lift_ci == pytest.approx(lift_ci, rel=1e-9)
    assert est.p_value == pytest.approx(p, rel=1e-7)


SIZES = {"p1": (900, 100), "p2": (2500, 2500), "p3": (300, 700)}  # (control, treatment)


def test_stratified_mean_matches_numpy_over_per_unit_values() -> None:
    rng = np.random.default_rng(11)
    data = {
        k: {"control": _normal(rng, nc, 5 + i, 2), "treatment": _normal(rng, nt, 5.4 + i, 3)}
        for i, (k, (nc, nt)) in enumerate(SIZES.items())
    }
    by_phase = {k: {v: agg(a) for v, a in arms.items()} for k, arms in data.items()}
    est = stratified_compare(REVENUE, by_phase, "control", "treatment", 0.05)
    rows = []
    for arms in data.values():
        c, t = arms["control"]["y"], arms["treatment"]["y"]
        rows.append(
            (len(c), len(t), c.mean(), c.var(ddof=1) / len(c), t.mean(), t.var(ddof=1) / len(t))
        )
    _assert_matches(est, _stratify(rows))
    assert est.stratified and est.phases_used == ("p1", "p2", "p3") and est.phases_dropped == ()
    assert est.weights == pytest.approx({"p1": 1000 / 7000, "p2": 5000 / 7000, "p3": 1000 / 7000})
    c_means = [arms["control"]["y"].mean() for arms in data.values()]
    assert est.value_control == pytest.approx(np.dot(list(est.weights.values()), c_means))


def test_stratified_ratio_uses_each_phases_delta_method_variance() -> None:
    rng = np.random.default_rng(12)
    data = {
        k: {"control": _ratio(rng, nc, 0.3 + 0.1 * i), "treatment": _ratio(rng, nt, 0.33 + 0.1 * i)}
        for i, (k, (nc, nt)) in enumerate(SIZES.items())
    }
    by_phase = {k: {v: agg(a) for v, a in arms.items()} for k, arms in data.items()}
    est = stratified_compare(CPE, by_phase, "control", "treatment", 0.1)

    def ratio(a: Arrays) -> tuple[float, float]:
        # Linearisation: Var(R) = Var(num − R·den) / (n·mean_den²), the delta method's form.
        r = a["num"].sum() / a["den"].sum()
        return r, np.var(a["num"] - r * a["den"], ddof=1) / (len(a["den"]) * a["den"].mean() ** 2)

    rows = [
        (
            len(arms["control"]["den"]),
            len(arms["treatment"]["den"]),
            *ratio(arms["control"]),
            *ratio(arms["treatment"]),
        )
        for arms in data.values()
    ]
    _assert_matches(est, _stratify(rows, alpha=0.1))


def test_stratified_cuped_pools_theta_within_phase_and_arm() -> None:
    rng = np.random.default_rng(13)
    data = {
        k: {"control": _normal(rng, nc, 5 + i, 2), "treatment": _normal(rng, nt, 5 + i, 2)}
        for i, (k, (nc, nt)) in enumerate(SIZES.items())
    }
    by_phase = {k: {v: agg(a) for v, a in arms.items()} for k, arms in data.items()}
    est = stratified_compare(REVENUE, by_phase, "control", "treatment", cuped=True)
    groups = [a for arms in data.values() for a in arms.values()]
    co = sum(((g["y"] - g["y"].mean()) * (g["x"] - g["x"].mean())).sum() for g in groups)
    theta = co / sum(((g["x"] - g["x"].mean()) ** 2).sum() for g in groups)
    mean_x = np.concatenate([g["x"] for g in groups]).mean()
    rows = []
    for arms in data.values():
        c, t = (arms[v]["y"] - theta * (arms[v]["x"] - mean_x) for v in ("control", "treatment"))
        rows.append(
            (len(c), len(t), c.mean(), c.var(ddof=1) / len(c), t.mean(), t.var(ddof=1) / len(t))
        )
    _assert_matches(est, _stratify(rows))
    plain = stratified_compare(REVENUE, by_phase, "control", "treatment")
    assert est.diff_se < 0.8 * plain.diff_se  # X explains half of Y's variance here


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_single_phase_gives_exactly_todays_welch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = {"y": (rng.random(3000) < 0.10).astype(float)}
    t = {"y": (rng.random(2000) < 0.12).astype(float)}
    ac, at = agg(c), agg(t)
    est = stratified_compare(
        CONV, {"only": {"control": ac, "treatment": at}}, "control", "treatment"
    )
    assert est.estimate == compare(CONV, moments(CONV, at), moments(CONV, ac), 0.05)  # exactly
    ref = st.ttest_ind(t["y"], c["y"], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert est.diff_ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert not est.stratified and est.phases_used == ("only",) and est.weights == {"only": 1.0}
    assert (est.value_control, est.value_variant) == (c["y"].mean(), t["y"].mean())


def test_a_single_phase_ratio_and_cuped_give_exactly_todays_figures() -> None:
    rng = np.random.default_rng(5)
    ratio = {v: agg(_ratio(rng, 800, 0.3)) for v in ("control", "treatment", "t2")}
    est = stratified_compare(CPE, {"p": ratio}, "control", "treatment")
    today = compare(CPE, moments(CPE, ratio["treatment"]), moments(CPE, ratio["control"]), 0.05)
    assert est.estimate == today
    means = {v: agg(_normal(rng, 600, 5, 2)) for v in ("control", "treatment", "t2")}
    fit = cuped_fit(REVENUE, means.values())  # today: θ over all the experiment's variants
    est = stratified_compare(REVENUE, {"p": means}, "control", "treatment", cuped=True)
    today = compare(
        REVENUE,
        moments(REVENUE, means["treatment"], fit),
        moments(REVENUE, means["control"], fit),
        0.05,
    )
    assert est.estimate == today


def test_a_phase_with_an_arm_under_two_units_is_left_out_and_named() -> None:
    rng = np.random.default_rng(21)
    full = {
        k: {v: agg(_normal(rng, 400, 5, 2)) for v in ("control", "treatment")} for k in ("p1", "p3")
    }
    thin = {"control": agg(_normal(rng, 50, 9, 2)), "treatment": agg(_normal(rng, 1, 9, 2))}
    est = stratified_compare(
        REVENUE, {"p1": full["p1"], "p2": thin, "p3": full["p3"]}, "control", "treatment"
    )
    assert est.phases_used == ("p1", "p3") and est.phases_dropped == ("p2",)
    assert est.estimate == stratified_compare(REVENUE, full, "control", "treatment").estimate
    # One usable phase left: the single-phase figures (Welch) of that phase.
    est = stratified_compare(REVENUE, {"p1": full["p1"], "p2": thin}, "control", "treatment")
    only = full["p1"]
    welch = compare(
        REVENUE, moments(REVENUE, only["treatment"]), moments(REVENUE, only["control"]), 0.05
    )
    assert est.estimate == welch and not est.stratified and est.phases_dropped == ("p2",)
    # No usable phase: no estimate rather than a merged (biasable) one.
    est = stratified_compare(REVENUE, {"p2": thin, "p4": thin}, "control", "treatment")
    assert math.isnan(est.diff) and math.isnan(est.p_value) and est.phases_dropped == ("p2", "p4")


def test_bad_comparisons_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha must be in"):
        stratified_compare(CONV, {}, "control", "treatment", alpha=1.5)
    with pytest.raises(ValueError, match="with itself"):
        stratified_compare(CONV, {}, "control", "control")


# --- simulation: a 90/10 -> 50/50 ramp with a known truth -----------------------------------

SIMS = 400
RAMP = _ramp()
ARMS = ("control", "treatment")


def _kept_lookup(plan: PhasePlan, pid: str) -> np.ndarray:
    """Per bucket: the index in ARMS of the variant that keeps it in phase ``pid``, or -1."""
    out = np.full(BUCKETS, -1)
    for v, ranges in plan[pid].kept.items():
        for lo, hi in ranges:
            out[lo:hi] = ARMS.index(v)
    return out


LOOKUP = {pid: _kept_lookup(RAMP, pid) for pid in ("a", "b")}
BOUNDS = {p.phase.id: np.array(p.phase.bounds) for p in RAMP.phases}


def _enrol(rng: np.random.Generator, pid: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Variant index of n units enrolled in phase ``pid``, and whether the plan keeps them."""
    b = rng.integers(0, BUCKETS, n)
    arm = np.searchsorted(BOUNDS[pid], b, side="right")
    return arm, LOOKUP[pid][b] == arm


def test_the_stratified_estimate_covers_a_ramps_true_effect_where_pooling_is_biased() -> None:
    # Phase a (90/10): early enrollers converting at 0.20; phase b (50/50): late ones at 0.10.
    # The treatment adds +0.02 in both; kept treatment units are mostly late (low baseline).
    effect, baseline, n = 0.02, {"a": 0.20, "b": 0.10}, 20_000
    strat, pooled = np.zeros((SIMS, 2)), np.zeros((SIMS, 2))
    covered = np.zeros((SIMS, 2), dtype=bool)
    for seed in range(SIMS):
        rng = np.random.default_rng(seed)
        by_phase: dict[str, dict[str, Aggregates]] = {}
        for pid, base in baseline.items():
            arm, kept = _enrol(rng, pid, n)
            y = (rng.random(n) < base + effect * arm).astype(float)
            by_phase[pid] = {v: agg({"y": y[kept & (arm == i)]}) for i, v in enumerate(ARMS)}
        s = stratified_compare(CONV, by_phase, "control", "treatment")
        merged = {v: by_phase["a"][v] + by_phase["b"][v] for v in ARMS}
        p = compare(
            CONV, moments(CONV, merged["treatment"]), moments(CONV, merged["control"]), 0.05
        )
        for j, e in enumerate((s.estimate, p)):
            (strat if j == 0 else pooled)[seed] = e.diff, e.diff_se
            covered[seed, j] = e.diff_ci[0] <= effect <= e.diff_ci[1]
    rates = covered.mean(axis=0)
    bias = strat[:, 0].mean() - effect, pooled[:, 0].mean() - effect
    se = strat[:, 1].mean(), pooled[:, 1].mean()
    print(
        f"\nramp 90/10 -> 50/50, true diff +{effect}, {SIMS} runs: coverage of 95% CIs "
        f"stratified {rates[0]:.3f}, pooled {rates[1]:.3f}; mean diff stratified "
        f"{strat[:, 0].mean():+.5f} (bias {bias[0]:+.5f}, se {se[0]:.5f}), pooled "
        f"{pooled[:, 0].mean():+.5f} (bias {bias[1]:+.5f}, se {se[1]:.5f})"
    )
    lo, hi = band(0.95, SIMS)
    assert lo <= rates[0] <= hi, (rates[0], (lo, hi))
    assert abs(bias[0]) < 4 * strat[:, 0].std() / math.sqrt(SIMS)  # unbiased up to noise
    assert abs(bias[1]) > 5 * se[1]  # pooling is off by many standard errors...
    assert rates[1] < 0.05  # ...and its intervals almost never cover the truth


def test_per_phase_srm_is_calibrated_on_an_aa_ramp_where_the_pooled_check_always_flags() -> None:
    n = 20_000
    raw, adjusted, pooled = np.zeros((SIMS, 2)), np.zeros(SIMS), np.zeros(SIMS)
    for seed in range(SIMS):
        rng = np.random.default_rng(seed)
        units, every = {}, np.zeros(2, dtype=int)
        for pid in ("a", "b"):
            arm, kept = _enrol(rng, pid, n)
            units[pid] = dict(zip(ARMS, np.bincount(arm[kept], minlength=2).tolist(), strict=True))
            every += np.bincount(arm, minlength=2)
        srm = phase_srm(RAMP, units)
        raw[seed] = [s.p_value for s in srm]
        adjusted[seed] = min(s.p_value_adjusted for s in srm)
        # Before phases: all units by first variant against the weights in force now.
        pooled[seed] = stats.srm_p_value(
            dict(zip(ARMS, every.tolist(), strict=True)), {"control": 0.5, "treatment": 0.5}
        )
    fp = (raw < 0.05).mean(axis=0)
    print(
        f"\nA/A ramp, {SIMS} runs: share of per-phase SRM p < 0.05: a {fp[0]:.3f}, b {fp[1]:.3f}; "
        f"any Holm-adjusted p < 0.05: {(adjusted < 0.05).mean():.3f}; "
        f"pooled check against 50/50 flags {(pooled < 0.05).mean():.3f}"
    )
    lo, hi = band(0.05, SIMS)
    assert all(lo <= r <= hi for r in fp), (fp, (lo, hi))
    assert (adjusted < 0.05).mean() <= hi  # Holm keeps the family-wise rate at or below 5%
    assert (pooled < 0.05).mean() > 0.99
