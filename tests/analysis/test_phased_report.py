"""The report of a ramped experiment, from an archive whose exposures carry phase fields.

A ramp 90/10 (early enrollers, baseline conversion 0.20) -> 50/50 (late enrollers, 0.10) with a
true effect of +0.02 in both phases: the figures are recomputed here in plain Python/numpy from
the test's own events (which units are kept, each phase's SRM, the stratified estimate) and must
equal the report's; the pooled estimate over the same units misses the truth, the stratified
one does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from analysis import ReportOptions, build_report
from experiments import bucket, bucket_bounds, variant_index
from tests.analysis.analysis_testkit import ArchiveWriter, experiment

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
SALT = "home-recs-demo"
A = ("aaaaaaaaaaaa", [("control", 90.0), ("treatment", 10.0)])
B = ("bbbbbbbbbbbb", [("control", 50.0), ("treatment", 50.0)])
EFFECT = 0.02


def variant_of(weights: list[tuple[str, float]], b: int) -> str:
    bounds = bucket_bounds([w for _, w in weights])
    return weights[variant_index(bounds, b)][0]


@dataclass
class Unit:
    phase: str
    variant: str
    bucket: int
    converted: bool
    platform: str


def ramped_archive(
    root: Path, *, n: int = 3000, seed: int = 1, holdout: int = 0
) -> tuple[Path, list[Unit], list[bool]]:
    rng = np.random.default_rng(seed)
    w = ArchiveWriter(root)
    units: list[Unit] = []
    for k, (phase, day, base) in enumerate(((A, 0, 0.20), (B, 2, 0.10))):
        for i in range(n):
            unit = f"{'ab'[k]}{i}"
            b = bucket(SALT, unit)
            v = variant_of(phase[1], b)
            t = T0 + timedelta(days=day, minutes=int(rng.integers(600)))
            platform = "ios" if rng.random() < 0.4 else "android"
            w.exposure(unit, v, t, phase=phase, bucket=b, attributes={"platform": platform})
            converted = bool(rng.random() < base + (EFFECT if v == "treatment" else 0.0))
            if converted:
                w.outcome(unit, "purchase", t + timedelta(minutes=30), 10.0)
            units.append(Unit(phase[0], v, b, converted, platform))
            if k == 0 and rng.random() < 0.3:  # comes back in the 50/50 phase, in its arm there
                w.exposure(
                    unit, variant_of(B[1], b), T0 + timedelta(days=3), phase=B, bucket=b,
                    attributes={"platform": platform},
                )  # fmt: skip
    held: list[bool] = []
    for i in range(holdout):  # held out of the 50/50 phase: served the default, baseline only
        unit = f"h{i}"
        t = T0 + timedelta(days=2, minutes=int(rng.integers(600)))
        w.exposure(unit, "__holdout__", t, phase=B, bucket=bucket(SALT, unit), holdout=True)
        held.append(bool(rng.random() < 0.10))
        if held[-1]:
            w.outcome(unit, "purchase", t + timedelta(minutes=30), 10.0)
    return w.write(), units, held


def kept(units: list[Unit]) -> list[Unit]:
    """By bucket: a 90/10 unit stays only if its bucket has the same arm at 50/50."""
    return [u for u in units if u.phase == B[0] or variant_of(B[1], u.bucket) == u.variant]


def stratified(units: list[Unit]) -> tuple[float, float]:
    """diff and its se by the issue's formula, over the kept units (independent of the code)."""
    total = len(units)
    m = {"control": 0.0, "treatment": 0.0}
    var = {"control": 0.0, "treatment": 0.0}
    for pid in (A[0], B[0]):
        in_k = [u for u in units if u.phase == pid]
        wk = len(in_k) / total
        for v in m:
            y = np.array([u.converted for u in in_k if u.variant == v], dtype=float)
            m[v] += wk * y.mean()
            var[v] += wk**2 * y.var(ddof=1) / len(y)
    return m["treatment"] - m["control"], math.sqrt(var["treatment"] + var["control"])


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Unit], list[bool]]:
    return ramped_archive(tmp_path_factory.mktemp("ramp"), holdout=800)


def test_units_whose_arm_changes_later_are_excluded_by_bucket_and_counted(ramp) -> None:
    root, units, _ = ramp
    report = build_report(experiment(), root)
    phases = {p.id: p for p in report.phases}
    moved = [u for u in units if u.phase == A[0] and variant_of(B[1], u.bucket) != u.variant]
    assert moved and all(u.variant == "control" and 5000 <= u.bucket < 9000 for u in moved)
    assert phases[A[0]].excluded == {"control": len(moved)}
    assert phases[B[0]].excluded == {}
    expected_units = {
        v: sum(1 for u in kept(units) if u.variant == v) for v in ("control", "treatment")
    }
    assert {v: s.units for v, s in report.variants.items()} == expected_units


def test_each_phase_is_checked_against_its_own_kept_shares(ramp) -> None:
    root, units, _ = ramp
    report = build_report(experiment(), root)
    a = next(p for p in report.phases if p.id == A[0])
    assert a.expected_share == pytest.approx({"control": 5 / 6, "treatment": 1 / 6})
    counts = [sum(1 for u in kept(units) if u.phase == A[0] and u.variant == v) for v in a.units]
    expected = [sum(counts) * a.expected_share[v] for v in a.units]
    assert a.srm_p_value == pytest.approx(st.chisquare(counts, expected).pvalue, rel=1e-9)
    # The ramp raises no alarm, though the arms hold 1.6x more control than treatment units.
    assert not report.srm_alarm and report.verdict is not None
    assert report.verdict.decision != "invalid"
    assert report.srm_p_values == tuple(p.srm_p_value_adjusted for p in report.phases)


def test_the_stratified_estimate_is_the_issues_formula_and_covers_the_truth(ramp) -> None:
    root, units, _ = ramp
    report = build_report(experiment(), root)
    conversion = report.metrics[0]
    (c,) = conversion.comparisons
    diff, se = stratified(kept(units))
    z = st.norm.ppf(0.975)
    assert conversion.stratified
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx((diff - z * se, diff + z * se), rel=1e-9)
    assert c.p_value == pytest.approx(2 * st.norm.sf(abs(diff) / se), rel=1e-6)
    assert c.diff_ci[0] < EFFECT < c.diff_ci[1]
    # The pooled comparison of the same units mixes early and late enrollers in different
    # proportions per arm (Simpson's paradox): its interval misses the truth.
    pooled = st.ttest_ind(
        [u.converted for u in kept(units) if u.variant == "treatment"],
        [u.converted for u in kept(units) if u.variant == "control"],
        equal_var=False,
    )
    assert pooled.confidence_interval(0.95).high < EFFECT


def test_the_holdout_is_compared_with_each_arm_and_stays_out_of_the_arms(ramp) -> None:
    root, units, held = ramp
    report = build_report(experiment(), root)
    assert report.holdout is not None and report.holdout.units == len(held) == 800
    assert "__holdout__" not in report.variants
    by = {(c.metric, c.variant): c for c in report.holdout.comparisons}
    treat = by[("conversion", "treatment")]
    # The holdout units are all in the 50/50 phase, so the comparison is that phase's alone:
    # Welch's test of the phase's treatment units against the holdout.
    t_units = [u.converted for u in units if u.phase == B[0] and u.variant == "treatment"]
    welch = st.ttest_ind(t_units, held, equal_var=False)
    assert treat.value_holdout == pytest.approx(np.mean(held))
    assert treat.value_variant == pytest.approx(np.mean(t_units))
    assert treat.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    # and the arms' own comparison does not see the holdout records
    assert report.metrics[0].comparisons[0].diff == pytest.approx(
        stratified(kept(units))[0], rel=1e-9
    )


def test_segments_give_the_figures_per_attribute_value_with_holm_across_them(ramp) -> None:
    root, units, _ = ramp
    report = build_report(experiment(), root, options=ReportOptions(segment="platform"))
    assert report.segment_by == "platform"
    groups = {s.value: s for s in report.segments}
    assert set(groups) == {"ios", "android"}
    for value, seg in groups.items():
        mine = [u for u in kept(units) if u.platform == value]
        assert seg.units == {
            v: sum(1 for u in mine if u.variant == v) for v in ("control", "treatment")
        }
        (c,) = seg.metrics["conversion"]
        assert c.diff == pytest.approx(stratified(mine)[0], rel=1e-9)
    raw = sorted(groups[v].metrics["conversion"][0].p_value for v in groups)
    adjusted = sorted(groups[v].metrics["conversion"][0].p_value_adjusted for v in groups)
    assert adjusted[0] == pytest.approx(min(1.0, 2 * raw[0]))
    assert adjusted[1] == pytest.approx(max(adjusted[0], raw[1]))
    # the overall figures do not change with --by
    plain = build_report(experiment(), root)
    (with_by,), (without,) = report.metrics[0].comparisons, plain.metrics[0].comparisons
    assert with_by.diff == pytest.approx(without.diff, rel=1e-12)
    assert with_by.diff_ci == pytest.approx(without.diff_ci, rel=1e-12)
    assert with_by.p_value == pytest.approx(without.p_value, rel=1e-9)


def test_records_without_phases_still_give_the_single_phase_report(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(40):
        v = "control" if i % 2 else "treatment"
        w.exposure(f"u{i}", v, T0 + timedelta(minutes=i))
        if i % 3 == 0:
            w.outcome(f"u{i}", "purchase", T0 + timedelta(minutes=i + 5), 5.0)
    report = build_report(experiment(), w.write())
    (phase,) = report.phases
    assert phase.id == "" and phase.excluded == {}
    assert not report.metrics[0].stratified
