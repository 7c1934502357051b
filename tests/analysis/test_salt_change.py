"""A salt change inside the report's window: the report analyses one salt's units, and says so.

Run 1 serves salt ``SALT_1`` at 90/10, one visit per unit; then the salt changes to ``SALT_2``
at 50/50 (a forced apply, or a restart under a new salt), which deals every unit again. Most of
run 1's units come back during run 2, with new ones, and each unit of run 2 visits ``VISITS``
times, served the arm of its new bucket. Every visit converts with probability ``BASE``, plus
``EFFECT`` in treatment: the true difference in conversion is ``EFFECT`` for run 1's units (one
visit) and ``TRUE_RUN_2`` for run 2's. For a moment after the change a slow replica still
serves run 1 (``LAG``, within the report's 5-minute overlap), to new units too.

The figures are recomputed here from the test's own visits, by the rule of docs/analysts.md
("Salt changes"), with numpy/scipy, and must equal the report's. The salt-blind reading (what
the report did before it checked salts: a unit in the phase of its first exposure, its logged
bucket compared across phases, every later purchase counted) is recomputed too: it excludes
run 1's control units by a bucket that no longer decides their arm, counts purchases made
under the other arm, and misses the truth.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from analysis import ReportOptions, build_report
from analysis.salts import check_salt
from analysis.sql import PhaseRecord
from experiments import Experiment, bucket, bucket_bounds, parse_experiment, variant_index
from tests.analysis.analysis_testkit import T0, ArchiveWriter

SALT_1, SALT_2 = "home-recs-demo", "home-recs-demo-run-2"
RUN_1 = ("111111111111", [("control", 90.0), ("treatment", 10.0)])
RUN_2 = ("222222222222", [("control", 50.0), ("treatment", 50.0)])
CHANGE = T0 + timedelta(days=2)
LAG = timedelta(minutes=2)  # a slow replica serves run 1 this long after the change
BASE, EFFECT = 0.30, 0.10
VISITS = 3  # per unit during run 2
TRUE_RUN_2 = (1 - BASE) ** VISITS - (1 - BASE - EFFECT) ** VISITS  # 0.127
RETURN = 0.95  # share of run 1's units that come back during run 2
PURCHASE_AFTER = timedelta(minutes=30)

YAML = """
key: home-recs-demo
surface: home_top
salt: {salt}
variants:
  - {{key: control,   weight: {control}, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: {treatment}, model: "models:/home_recs/7"}}
metrics:
  - {{name: conversion, kind: proportion, outcome: purchase}}
"""


def experiment_of(salt: str, weights: list[tuple[str, float]]) -> Experiment:
    w = dict(weights)
    return parse_experiment(YAML.format(salt=salt, control=w["control"], treatment=w["treatment"]))


RUN_1_FILE = experiment_of(SALT_1, RUN_1[1])
RUN_2_FILE = experiment_of(SALT_2, RUN_2[1])


@functools.lru_cache(maxsize=8)
def _bounds(weights: tuple[float, ...]) -> tuple[int, ...]:
    return bucket_bounds(weights)


def arm(weights: list[tuple[str, float]], b: int) -> str:
    return weights[variant_index(_bounds(tuple(w for _, w in weights)), b)][0]


@dataclass(frozen=True)
class Visit:
    unit: str
    phase: str
    variant: str
    bucket: int
    ts: datetime
    converted: bool  # a purchase PURCHASE_AFTER the visit


def salt_changed_archive(
    root: Path, *, n1: int, n2: int, seed: int
) -> tuple[Path, dict[str, list[Visit]]]:
    """``n1`` units in run 1, ``n2`` new ones in run 2; the visits of each unit, in time order."""
    rng = np.random.default_rng(seed)
    w = ArchiveWriter(root)
    visits: dict[str, list[Visit]] = defaultdict(list)

    def visit(
        unit: str, salt: str, phase: tuple[str, list[tuple[str, float]]], t: datetime
    ) -> None:
        b = bucket(salt, unit)
        v = arm(phase[1], b)
        w.exposure(unit, v, t, phase=phase, bucket=b)
        converted = bool(rng.random() < BASE + (EFFECT if v == "treatment" else 0.0))
        if converted:
            w.outcome(unit, "purchase", t + PURCHASE_AFTER, 1.0)
        visits[unit].append(Visit(unit, phase[0], v, b, t, converted))

    def during(start: datetime, span: timedelta) -> datetime:
        return start + timedelta(seconds=int(rng.integers(int(span.total_seconds()))))

    def run_2(unit: str) -> None:
        first = during(CHANGE + LAG, timedelta(hours=12))
        for k in range(VISITS):
            visit(unit, SALT_2, RUN_2, first + k * timedelta(hours=4))

    for i in range(n1):
        visit(f"a{i}", SALT_1, RUN_1, during(T0, timedelta(days=2) - timedelta(hours=1)))
    for i in range(max(1, n1 // 50)):  # new units served by the slow replica after the change
        visit(f"late{i}", SALT_1, RUN_1, during(CHANGE + timedelta(seconds=1), LAG))
    visit("b-first", SALT_2, RUN_2, CHANGE)  # run 2's first exposure: the change
    for i in range(n2):
        run_2(f"b{i}")
    for i in range(n1):
        if rng.random() < RETURN:
            run_2(f"a{i}")
    for vs in visits.values():
        vs.sort(key=lambda v: v.ts)
    return w.write(), visits


def welch(units: dict[str, tuple[str, bool]]) -> tuple[float, tuple[float, float]]:
    """Welch's difference and 95% CI of conversion, treatment minus control (scipy)."""
    t = [c for v, c in units.values() if v == "treatment"]
    c = [c for v, c in units.values() if v == "control"]
    ci = st.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    return float(np.mean(t) - np.mean(c)), (float(ci.low), float(ci.high))


def enrolled_under(
    visits: dict[str, list[Visit]], phase: str, until: datetime | None = None
) -> dict[str, tuple[str, bool]]:
    """The rule, by hand: a unit is enrolled at its first exposure in ``phase`` (before
    ``until``), in that exposure's arm, and converted when one of its purchases is at or after
    that exposure and before ``until``."""
    out = {}
    for unit, vs in visits.items():
        f = next((v for v in vs if v.phase == phase and (until is None or v.ts < until)), None)
        if f is not None:
            out[unit] = (f.variant, any(
                v.converted and f.ts <= v.ts + PURCHASE_AFTER
                and (until is None or v.ts + PURCHASE_AFTER < until)
                for v in vs
            ))  # fmt: skip
    return out


def salt_blind(visits: dict[str, list[Visit]]) -> tuple[float, float, int]:
    """diff, se and excluded units of the salt-blind reading: each unit in the phase of its
    first exposure, excluded when its logged bucket maps to another arm in a phase started
    after it, every later purchase counted, stratified by phase (docs/analysts.md's formula)."""
    kept = {
        u: vs for u, vs in visits.items()
        if vs[0].phase == RUN_2[0] or arm(RUN_2[1], vs[0].bucket) == vs[0].variant
    }  # fmt: skip
    m = {"control": 0.0, "treatment": 0.0}
    var = {"control": 0.0, "treatment": 0.0}
    for pid in (RUN_1[0], RUN_2[0]):
        in_k = [vs for vs in kept.values() if vs[0].phase == pid]
        wk = len(in_k) / len(kept)
        for a in m:
            y = np.array([any(v.converted for v in vs) for vs in in_k if vs[0].variant == a])
            m[a] += wk * y.mean()
            var[a] += wk**2 * y.var(ddof=1) / len(y)
    diff = m["treatment"] - m["control"]
    return diff, math.sqrt(var["treatment"] + var["control"]), len(visits) - len(kept)


N1, N2 = 8000, 4000


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Visit]]]:
    return salt_changed_archive(tmp_path_factory.mktemp("salt"), n1=N1, n2=N2, seed=7)


def test_the_new_salts_report_enrolls_units_at_their_first_exposure_under_it(changed) -> None:
    root, visits = changed
    report = build_report(RUN_2_FILE, root)
    expected = enrolled_under(visits, RUN_2[0])
    assert {v: s.units for v, s in report.variants.items()} == {
        a: sum(1 for v, _ in expected.values() if v == a) for a in ("control", "treatment")
    }
    assert [p.id for p in report.phases] == [RUN_2[0]]
    assert report.phases[0].excluded == {}  # run 1's buckets are not compared with run 2's
    (c,) = report.metrics[0].comparisons
    diff, ci = welch(expected)
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx(ci, rel=1e-9)
    assert c.diff_ci[0] < TRUE_RUN_2 < c.diff_ci[1]
    (warning,) = report.warnings
    assert warning.startswith(
        f"salt changed: one phase of this window was served under another salt than this "
        f"file's '{SALT_2}'"
    )
    run_1 = [v.ts for vs in visits.values() for v in vs if v.phase == RUN_1[0]]
    assert (
        f"{RUN_1[0]} ({min(run_1):%Y-%m-%dT%H:%M:%SZ} to {max(run_1):%Y-%m-%dT%H:%M:%SZ}, "
        in warning
    )
    assert f"{N1 + N1 // 50:,} units first exposed in it" in warning
    assert "counted only until" not in warning  # run 1 was not served after run 2 began
    assert report.to_dict()["warnings"] == [warning]
    # Read blind to the salt, the same archive gives an estimate far below the truth, and
    # excludes 40% of run 1's control units by a bucket that no longer decides their arm.
    blind, se, excluded = salt_blind(visits)
    assert blind + 3 * se < TRUE_RUN_2
    assert excluded > 0.3 * N1


def test_the_old_salts_report_counts_its_units_until_the_change(changed) -> None:
    root, visits = changed
    report = build_report(RUN_1_FILE, root)
    cut = min(v.ts for vs in visits.values() for v in vs if v.phase == RUN_2[0])
    assert cut == CHANGE
    expected = enrolled_under(visits, RUN_1[0], until=cut)
    late = {u for u, vs in visits.items() if vs[0].phase == RUN_1[0] and vs[0].ts >= cut}
    assert len(late) == N1 // 50 and not late & set(expected)  # first exposed after the change
    assert {v: s.units for v, s in report.variants.items()} == {
        a: sum(1 for v, _ in expected.values() if v == a) for a in ("control", "treatment")
    }
    (phase,) = report.phases
    assert phase.id == RUN_1[0]
    # None of run 1's control units is excluded by its bucket: only the late ones, by time.
    assert sum(phase.excluded.values()) == len(late)
    assert phase.srm_p_value > 0.001
    (c,) = report.metrics[0].comparisons
    diff, ci = welch(expected)
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx(ci, rel=1e-9)
    assert c.diff_ci[0] < EFFECT < c.diff_ci[1]
    (warning,) = report.warnings
    assert f"another salt than this file's '{SALT_1}'" in warning
    assert (
        f"phase {RUN_1[0]} until {cut:%Y-%m-%dT%H:%M:%SZ} ({len(late):,} units first exposed"
        " from then on are excluded)" in warning
    )


def test_a_window_from_the_change_does_not_take_the_old_salts_lag_for_a_new_change(
    changed,
) -> None:
    """From the change on, the slow replica's exposures under run 1 start after run 2's first
    one; within the 5-minute overlap they are the lag, not run 1 served again."""
    root, _ = changed
    whole = build_report(RUN_2_FILE, root)
    window = build_report(RUN_2_FILE, root, since=CHANGE)
    assert {v: s.units for v, s in window.variants.items()} == {
        v: s.units for v, s in whole.variants.items()
    }
    assert window.metrics[0].comparisons == whole.metrics[0].comparisons
    (warning,) = window.warnings
    assert f"{N1 // 50:,} units first exposed in it" in warning  # the slow replica's new units
    assert "counted only until" not in warning


def test_a_salt_served_again_cuts_the_units_of_the_other_salt_where_it_came_back(
    tmp_path: Path,
) -> None:
    """Salt 1, then salt 2 for a day, then salt 1 again (a folder of files edited twice): the
    report of salt 2 counts its units until salt 1 came back, past the replicas' lag at both
    switches, and excludes the units salt 2's slow replica enrolled after that."""
    rng = np.random.default_rng(11)
    w = ArchiveWriter(tmp_path)
    d1, d2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    bought: dict[str, list[datetime]] = defaultdict(list)
    first: dict[str, tuple[datetime, str]] = {}

    def visit(
        unit: str, salt: str, phase: tuple[str, list[tuple[str, float]]], t: datetime
    ) -> None:
        b = bucket(salt, unit)
        v = arm(phase[1], b)
        w.exposure(unit, v, t, phase=phase, bucket=b)
        if phase is RUN_2:
            first.setdefault(unit, (t, v))
        if rng.random() < BASE + (EFFECT if v == "treatment" else 0.0):
            w.outcome(unit, "purchase", t + PURCHASE_AFTER, 1.0)
            bought[unit].append(t + PURCHASE_AFTER)

    for i in range(600):
        visit(f"a{i}", SALT_1, RUN_1, T0 + timedelta(minutes=int(rng.integers(1200))))
    visit("b-first", SALT_2, RUN_2, d1)
    for i in range(20):  # salt 1's slow replica, within the overlap
        visit(f"lag1-{i}", SALT_1, RUN_1, d1 + timedelta(seconds=10 + i))
    for i in range(1500):
        t = d1 + timedelta(minutes=int(rng.integers(1200)))
        visit(f"b{i}", SALT_2, RUN_2, t)
        if i % 3 == 0:  # back under salt 1: its purchases there must not count for salt 2
            visit(f"b{i}", SALT_1, RUN_1, d2 + timedelta(hours=1))
    visit("c-first", SALT_1, RUN_1, d2)
    for i in range(15):  # salt 2's slow replica enrols new units after salt 1 came back
        visit(f"lag2-{i}", SALT_2, RUN_2, d2 + timedelta(seconds=10 + i))
    report = build_report(RUN_2_FILE, w.write())

    expected = {
        u: (v, any(t <= p < d2 for p in bought[u])) for u, (t, v) in first.items() if t < d2
    }
    assert {v: s.units for v, s in report.variants.items()} == {
        a: sum(1 for v, _ in expected.values() if v == a) for a in ("control", "treatment")
    }
    (phase,) = report.phases
    assert sum(phase.excluded.values()) == 15
    (c,) = report.metrics[0].comparisons
    diff, ci = welch(expected)
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx(ci, rel=1e-9)
    (warning,) = report.warnings
    assert f"phase {RUN_2[0]} until {d2:%Y-%m-%dT%H:%M:%SZ} (15 units" in warning


def test_a_run_shorter_than_the_overlap_is_still_cut_at_the_change(tmp_path: Path) -> None:
    """Run 1 lasts 90 seconds, then salt 2 is served and run 1 no more: that is a change, not
    replicas switching, however short (the window is not the overlap's to judge)."""
    rng = np.random.default_rng(5)
    w = ArchiveWriter(tmp_path)
    bought: dict[str, list[datetime]] = defaultdict(list)
    first: dict[str, tuple[datetime, str]] = {}
    change = T0 + timedelta(seconds=90)
    for i in range(800):
        for salt, phase, t in (
            (SALT_1, RUN_1, T0 + timedelta(seconds=int(rng.integers(90)))),
            (SALT_2, RUN_2, change + timedelta(seconds=int(rng.integers(90)))),
        ):
            unit = f"u{i}"
            v = arm(phase[1], bucket(salt, unit))
            w.exposure(unit, v, t, phase=phase, bucket=bucket(salt, unit))
            if phase is RUN_1:
                first[unit] = (t, v)
            if rng.random() < BASE + (EFFECT if v == "treatment" else 0.0):
                w.outcome(unit, "purchase", t + timedelta(seconds=5), 1.0)
                bought[unit].append(t + timedelta(seconds=5))
    w.exposure("u-change", "control", change, phase=RUN_2, bucket=bucket(SALT_2, "u-change"))
    report = build_report(RUN_1_FILE, w.write())
    expected = {u: (v, any(t <= p < change for p in bought[u])) for u, (t, v) in first.items()}
    (c,) = report.metrics[0].comparisons
    assert c.diff == pytest.approx(welch(expected)[0], rel=1e-9)
    assert f"until {change:%Y-%m-%dT%H:%M:%SZ}" in report.warnings[0]


def test_a_file_whose_salt_served_no_phase_gets_the_salt_blind_figures_and_a_warning(
    changed,
) -> None:
    root, _ = changed
    stranger = experiment_of("never-served", RUN_2[1])
    report = build_report(stranger, root)
    (warning,) = report.warnings
    assert warning.startswith("no phase of this window was served under this file's salt")
    assert "cannot be checked" in warning
    assert len(report.phases) == 2  # nothing left out: the phases are compared as before


def test_a_window_without_a_salt_change_reads_once_and_warns_of_nothing(tmp_path: Path) -> None:
    from tests.analysis.test_phased_report import ramped_archive

    root, _, _ = ramped_archive(tmp_path, n=300)
    report = build_report(experiment_of(SALT_1, RUN_2[1]), root)
    assert report.warnings == [] and "warnings" not in report.to_dict()
    assert len(report.phases) == 2


def test_segments_and_looks_of_a_salt_changed_window_cover_only_the_file_salts_units(
    changed,
) -> None:
    root, visits = changed
    report = build_report(
        RUN_2_FILE, root, options=ReportOptions(segment="platform", sequential_tau=0.2)
    )
    units = len(enrolled_under(visits, RUN_2[0]))
    assert sum(sum(s.units.values()) for s in report.segments) == units
    assert sum(sum(d.new_units.values()) for d in report.daily) == units
    assert report.daily[0].day == CHANGE.date()  # run 1's days are no look of run 2


def record(pid: str, witnesses: tuple[tuple[str, int], ...]) -> PhaseRecord:
    return PhaseRecord(pid, T0, T0, (), witnesses)


def test_the_salt_check_sorts_phases_by_their_witnesses() -> None:
    check = check_salt(
        SALT_2,
        [
            record("a", (("u1", bucket(SALT_2, "u1")), ("u9", bucket(SALT_2, "u9")))),
            record("b", (("u1", bucket(SALT_1, "u1")), ("u9", bucket(SALT_1, "u9")))),
            record("c", (("u1", bucket(SALT_2, "u1")), ("u9", bucket(SALT_1, "u9")))),
            record("", ()),
        ],
    )
    assert [p.id for p in check.matched] == ["a"]
    assert [p.id for p in check.other] == ["b", "c"]  # one witness off is enough
    assert [p.id for p in check.unknown] == [""]
    assert check.changed and check.other_ids == {"b", "c"}
    assert not check_salt(SALT_1, [record("b", (("u1", bucket(SALT_1, "u1")),))]).changed


@pytest.mark.slow
def test_across_simulated_salt_changes_the_intervals_cover_the_truth(tmp_path: Path) -> None:
    """80 archives (1,500 units in run 1, 1,000 new in run 2): the report's 95% intervals cover
    each run's true difference about 95% of the time; the salt-blind reading's rarely do.
    docs/analysts.md ("Salt changes") gives a larger run of the same simulation."""
    runs, covered_2, covered_1, covered_blind = 80, 0, 0, 0
    bias = []
    for seed in range(runs):
        root, visits = salt_changed_archive(tmp_path / str(seed), n1=1500, n2=1000, seed=seed)
        new = build_report(RUN_2_FILE, root).metrics[0].comparisons[0]
        old = build_report(RUN_1_FILE, root).metrics[0].comparisons[0]
        blind, se, _ = salt_blind(visits)
        covered_2 += new.diff_ci[0] < TRUE_RUN_2 < new.diff_ci[1]
        covered_1 += old.diff_ci[0] < EFFECT < old.diff_ci[1]
        covered_blind += blind - 1.96 * se < TRUE_RUN_2 < blind + 1.96 * se
        bias.append(blind - TRUE_RUN_2)
    # 95% nominal: 88% is three binomial standard deviations below it over 80 runs
    assert covered_2 >= 0.88 * runs and covered_1 >= 0.88 * runs
    assert covered_blind <= 0.6 * runs and np.mean(bias) < -0.03
