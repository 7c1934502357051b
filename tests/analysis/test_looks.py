"""Looks: each day's statistics as the report would have seen them then, and the mSPRT over them.

The reference here reads the archive's JSON lines in plain Python (independently of the SQL):
for each UTC day k, the units whose first exposure came before the end of day k, with only
the outcomes and exposures logged by then; Welch's test from scipy; the mSPRT as documented
in docs/analysts.md ("Always-valid p-values").
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from analysis import ReportOptions, analyse, build_report
from analysis.aggregates import Aggregates
from analysis.sql import Look, build_plan
from tests.analysis.analysis_testkit import T0, ArchiveWriter, experiment

TAU = 0.5
CONTROL = "control"
DAY = timedelta(days=1)


@dataclass
class Unit:
    """One unit as of some cutoff: its variant and its per-unit metric values."""

    variant: str
    conv: float
    rev: float
    clicks: float
    exposures: float


def _payloads(root: Path) -> list[dict[str, object]]:
    events: dict[str, dict[str, object]] = {}
    for f in root.rglob("*.json"):
        for line in f.read_text().splitlines():
            p = json.loads(line).get("jsonPayload") or {}
            if p.get("type") in ("exposure", "outcome"):
                events[str(p["event_id"])] = p  # delivered twice: counted once
    return list(events.values())


def _ts(p: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(p["ts"]).replace("Z", "+00:00"))


def units_at(events: list[dict[str, object]], cutoff: datetime | None) -> dict[str, Unit]:
    """Per-unit values (by unit id) from the events before ``cutoff`` (None: every event)."""
    before = [p for p in events if cutoff is None or _ts(p) < cutoff]
    exposures = [
        p
        for p in before
        if p["type"] == "exposure" and p["experiment"] == "home-recs-demo" and not p.get("forced")
    ]
    first: dict[str, tuple[datetime, str]] = {}
    count: dict[str, int] = defaultdict(int)
    for p in sorted(exposures, key=_ts):
        u = str(p["unit_id"])
        first.setdefault(u, (_ts(p), str(p["variant"])))
        count[u] += 1
    out = {u: Unit(v, 0.0, 0.0, 0.0, float(count[u])) for u, (_, v) in first.items()}
    for p in before:
        u = str(p.get("unit_id"))
        if p["type"] != "outcome" or u not in first or _ts(p) < first[u][0]:
            continue
        if p["name"] == "purchase":
            out[u].conv = 1.0
            out[u].rev += float(p["value"] or 0.0)  # type: ignore[arg-type]
        elif p["name"] == "click":
            out[u].clicks += 1.0
    return out


@dataclass(frozen=True)
class Ref:
    """A reference comparison of treatment against control on one metric."""

    value_c: float
    diff: float
    var: float
    p: float


def compare(units: Iterable[Unit], metric: str) -> Ref:
    """Welch (scipy) for conversion and revenue; the delta-method z-test for clicks/exposure."""
    units = list(units)
    t = [u for u in units if u.variant == "treatment"]
    c = [u for u in units if u.variant == CONTROL]
    if metric == "clicks_per_exposure":
        r = {}
        for name, g in (("t", t), ("c", c)):
            num = np.array([u.clicks for u in g])
            den = np.array([u.exposures for u in g])
            ratio = num.sum() / den.sum()
            var = (
                num.var(ddof=1) - 2 * ratio * np.cov(num, den)[0, 1] + ratio**2 * den.var(ddof=1)
            ) / (len(g) * den.mean() ** 2)
            r[name] = (ratio, var)
        diff, var = r["t"][0] - r["c"][0], r["t"][1] + r["c"][1]
        return Ref(r["c"][0], diff, var, float(2 * st.norm.sf(abs(diff) / math.sqrt(var))))
    attr = {"conversion": "conv", "revenue": "rev"}[metric]
    yt = np.array([getattr(u, attr) for u in t])
    yc = np.array([getattr(u, attr) for u in c])
    res = st.ttest_ind(yt, yc, equal_var=False)
    var = yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc)
    return Ref(float(yc.mean()), float(yt.mean() - yc.mean()), float(var), float(res.pvalue))


def msprt(ref: Ref, tau2: float) -> float:
    """docs/analysts.md: Λ with the look's normal score z = Φ⁻¹(1 − p/2) in place of diff/√V."""
    z = st.norm.isf(ref.p / 2)
    v = ref.var
    log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * z * z * v / (2 * v * (v + tau2))
    return min(1.0, math.exp(-log_lambda))


def end_of(day: date) -> datetime:
    return datetime.combine(day + DAY, datetime.min.time(), UTC)


def calendar(events: list[dict[str, object]]) -> list[date]:
    """Every UTC day from the first enrolment to the last event (the looks, and the quiet days)."""
    first = min(_ts(p) for p in events if p["type"] == "exposure").date()
    last = max(_ts(p) for p in events).date()
    return [first + i * DAY for i in range((last - first).days + 1)]


def novelty_archive(root: Path, *, seed: int, units: int = 400, days: int = 4) -> Path:
    """Units enrolled over ``days`` days; treatment buys within hours, control days later.

    A novelty effect as the issue found it: at the end of the first days, treatment is far
    ahead; with the outcomes still to come, the arms end up close. Clicks follow every later
    exposure, so the ratio metric moves from look to look too.
    """
    rng = np.random.default_rng(seed)
    w = ArchiveWriter(root)
    for i in range(units):
        v = "treatment" if rng.random() < 0.5 else CONTROL
        t = T0 + timedelta(days=int(rng.integers(days)), minutes=int(rng.integers(600)))
        for k in range(int(rng.integers(1, 4))):
            e = w.exposure(f"u{i}", v, t + timedelta(hours=20 * k))  # later visits: later days
            if k == 0 and rng.random() < 0.05:
                w.raw(json.dumps(e), t)  # delivered twice
            for _ in range(int(rng.poisson(0.8))):
                w.outcome(f"u{i}", "click", t + timedelta(hours=20 * k, minutes=3))
        if rng.random() < 0.35:
            delay = timedelta(hours=2) if v == "treatment" else timedelta(days=2, hours=3)
            w.outcome(f"u{i}", "purchase", t + delay, float(rng.exponential(20.0)))
        if rng.random() < 0.1:
            w.outcome(f"u{i}", "purchase", t - timedelta(hours=1), 99.0)  # before exposure
    w.exposure("qa", "treatment", T0, forced=True)
    w.outcome("stranger", "purchase", T0, 5.0)
    return w.write()


METRICS = ("conversion", "revenue", "clicks_per_exposure")


def test_each_look_is_the_data_as_of_the_end_of_its_day(tmp_path: Path) -> None:
    root = novelty_archive(tmp_path, seed=11)
    events = _payloads(root)
    rep = build_report(experiment(), root, options=ReportOptions(sequential_tau=TAU))
    days = calendar(events)
    assert [d.day for d in rep.daily] == days  # the archive has events on every day here
    final = units_at(events, None)
    old_reading: dict[str, float] = {}
    for m, result in zip(METRICS, rep.metrics, strict=True):
        tau2 = (TAU * abs(compare(final.values(), m).value_c)) ** 2
        running = 1.0
        old_running = 1.0
        for point in rep.daily:
            ref = compare(units_at(events, end_of(point.day)).values(), m)
            got = point.estimates[m]["treatment"]
            assert got.diff == pytest.approx(ref.diff, rel=1e-9, abs=1e-12), (m, point.day)
            assert got.var_diff == pytest.approx(ref.var, rel=1e-9), (m, point.day)
            assert got.p_value == pytest.approx(ref.p, rel=1e-6, abs=1e-12), (m, point.day)
            running = min(running, msprt(ref, tau2))
            assert got.p_value_sequential == pytest.approx(running, rel=1e-6, abs=1e-12)
            # the reading: units enrolled by then, with every outcome to the end
            enrolled = {
                str(p["unit_id"])
                for p in events
                if p["type"] == "exposure" and _ts(p) < end_of(point.day) and not p.get("forced")
            }
            seen = [unit for u, unit in final.items() if u in enrolled]
            old_running = min(old_running, msprt(compare(seen, m), tau2))
        c = result.comparisons[0]
        assert c.p_value_sequential == pytest.approx(running, rel=1e-6, abs=1e-12)
        # the last look is exactly the fixed-horizon data
        last = compare(final.values(), m)
        assert c.diff == pytest.approx(last.diff) and c.p_value == pytest.approx(last.p, rel=1e-6)
        assert rep.daily[-1].estimates[m]["treatment"].p_value == c.p_value
        old_reading[m] = old_running
    # the old reading (looks holding later outcomes) gives another answer on this archive
    conv = rep.metrics[0].comparisons[0].p_value_sequential
    assert conv is not None and not math.isclose(conv, old_reading["conversion"], rel_tol=0.1)


def test_outcomes_after_a_look_do_not_change_it(tmp_path: Path) -> None:
    """Adding the later days of data leaves every earlier look's figures as they were."""
    root = novelty_archive(tmp_path / "all", seed=5)
    early = T0.replace(hour=0) + 3 * DAY
    opts = ReportOptions(sequential_tau=TAU)
    full = build_report(experiment(), root, options=opts)
    cut = build_report(experiment(), root, options=opts, until=early)
    assert [d.day for d in cut.daily] == [d.day for d in full.daily if end_of(d.day) <= early]
    for a, b in zip(cut.daily, full.daily, strict=False):
        assert a.new_units == b.new_units
        for m in METRICS:
            x, y = a.estimates[m]["treatment"], b.estimates[m]["treatment"]
            assert (x.diff, x.var_diff, x.p_value) == pytest.approx((y.diff, y.var_diff, y.p_value))


def test_until_in_the_middle_of_a_day_makes_the_last_look_end_there(tmp_path: Path) -> None:
    root = novelty_archive(tmp_path, seed=2)
    events = _payloads(root)
    until = T0.replace(hour=15) + 2 * DAY
    rep = build_report(experiment(), root, options=ReportOptions(sequential_tau=TAU), until=until)
    assert rep.daily[-1].day == until.date()
    ref = compare(units_at(events, until).values(), "revenue")
    got = rep.daily[-1].estimates["revenue"]["treatment"]
    assert got.diff == pytest.approx(ref.diff) and got.var_diff == pytest.approx(ref.var)


def test_a_quiet_day_is_no_look_and_changes_nothing(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(40):
        v = "treatment" if i % 2 else CONTROL
        w.exposure(f"u{i}", v, T0)
        if i % 3 == 0:
            w.outcome(f"u{i}", "purchase", T0 + timedelta(hours=1), 10.0 + i)
        if i % 4 == 0:  # two days later, after a day with nothing logged
            w.outcome(f"u{i}", "purchase", T0 + 2 * DAY, 3.0)
    rep = build_report(experiment(), w.write(), options=ReportOptions(sequential_tau=TAU))
    assert [d.day for d in rep.daily] == [T0.date(), T0.date() + 2 * DAY]
    assert rep.daily[1].new_units == {CONTROL: 0, "treatment": 0}
    assert rep.variants["control"].units == 20


def test_cuped_sequential_uses_the_adjusted_statistics_of_each_look(tmp_path: Path) -> None:
    """With --cuped, each look's comparison is CUPED's on that look's data (θ of that look)."""
    w = ArchiveWriter(tmp_path)
    rng = np.random.default_rng(3)
    for i in range(200):
        v = "treatment" if i % 2 else CONTROL
        t = T0 + timedelta(days=i % 3, minutes=i)
        pre = float(rng.gamma(2.0, 5.0))
        w.outcome(f"u{i}", "purchase", t - 2 * DAY, pre)
        w.exposure(f"u{i}", v, t)
        later = timedelta(hours=1 + (7 * i) % 40)  # some on the enrolment day, some after
        w.outcome(f"u{i}", "purchase", t + later, pre + float(rng.normal(1.0, 2.0)))
    root = w.write()
    opts = ReportOptions(sequential_tau=TAU, cuped_window=timedelta(days=7))
    rep = build_report(experiment(), root, options=opts)
    plain = build_report(experiment(), root, options=ReportOptions(sequential_tau=TAU))
    events = _payloads(root)
    for point, plain_point in zip(rep.daily, plain.daily, strict=True):
        cutoff = end_of(point.day)
        ys, xs, vs = [], [], []
        first: dict[str, tuple[datetime, str]] = {}
        for p in sorted(events, key=_ts):
            if p["type"] == "exposure" and _ts(p) < cutoff:
                first.setdefault(str(p["unit_id"]), (_ts(p), str(p["variant"])))
        for u, (t0, v) in first.items():
            mine = [p for p in events if p["type"] == "outcome" and p["unit_id"] == u]
            ys.append(sum(float(p["value"]) for p in mine if t0 <= _ts(p) < cutoff))  # type: ignore[arg-type]
            xs.append(sum(float(p["value"]) for p in mine if t0 - 7 * DAY <= _ts(p) < t0))  # type: ignore[arg-type]
            vs.append(v)
        y, x, arm = np.array(ys), np.array(xs), np.array(vs)
        # θ pooled within arms, on this look's units only
        num = sum(np.cov(y[arm == a], x[arm == a])[0, 1] * ((arm == a).sum() - 1) for a in set(vs))
        den = sum(x[arm == a].var(ddof=1) * ((arm == a).sum() - 1) for a in set(vs))
        adj = y - num / den * (x - x.mean())
        ref = st.ttest_ind(adj[arm == "treatment"], adj[arm == CONTROL], equal_var=False)
        got = point.estimates["revenue"]["treatment"]
        assert got.p_value == pytest.approx(float(ref.pvalue), rel=1e-6)
        assert got.var_diff < plain_point.estimates["revenue"]["treatment"].var_diff
    assert rep.metrics[1].cuped
    c = rep.metrics[1].comparisons[0]
    assert c.p_value == rep.daily[-1].estimates["revenue"]["treatment"].p_value


def _trajectory_looks(
    rng: np.random.Generator, days: int, n_per_day: int, lift: float
) -> list[Look]:
    """Per-look aggregates of simulated units whose purchases arrive over the following days."""
    looks: list[Look] = []
    enrol = {v: rng.integers(0, days, n_per_day * days) for v in (CONTROL, "treatment")}
    delay = {v: rng.exponential(1.5, n_per_day * days) for v in enrol}
    buys = {
        v: rng.random(n_per_day * days) < 0.2 * (1 + (lift if v == "treatment" else 0.0))
        for v in enrol
    }
    revenue = {v: rng.lognormal(2.0, 1.0, n_per_day * days) for v in enrol}
    for k in range(days):
        for v in enrol:
            inside = enrol[v] <= k
            bought = (buys[v] & (enrol[v] + delay[v] < k + 1))[inside].astype(float)
            cols = {
                "exposures": np.ones(inside.sum()),
                "y0": bought,
                "y1": bought * revenue[v][inside],
                "num2": bought,
                "den2": np.ones(inside.sum()),
            }
            looks.append(Look(v, T0.date() + k * DAY, _aggregates(cols)))
    return looks


def _aggregates(cols: dict[str, np.ndarray]) -> Aggregates:
    n = len(cols["y0"])
    return Aggregates(
        n,
        {k: float(v.mean()) for k, v in cols.items()},
        {k: float(v.var(ddof=1)) for k, v in cols.items()},
        {("num2", "den2"): float(np.cov(cols["num2"], cols["den2"])[0, 1])},
    )


def test_sequential_p_is_never_below_the_fixed_horizon_p_of_the_data_seen() -> None:
    """At every look, p_seq ≥ the smallest fixed-horizon p of the looks so far.

    That is the exact statement: each look's 1/Λ is at least that look's own fixed-horizon p,
    and the always-valid p is their running minimum. (Against the last look's p alone it need
    not hold: an early strong effect that later vanishes keeps its small always-valid p.)
    Small arms, strong effects and sharp effects (where Welch's t and the normal differ most)
    included.
    """
    plan = build_plan(experiment(), "t")
    checked = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        lift = float(rng.choice([0.0, 0.2, 1.0, 3.0]))
        looks = _trajectory_looks(rng, int(rng.integers(2, 8)), int(rng.integers(4, 60)), lift)
        tau = float(rng.choice([0.05, 0.2, 1.0, 5.0]))
        rep = analyse(experiment(), plan, looks, options=ReportOptions(sequential_tau=tau))
        for m in METRICS:
            smallest = 1.0
            for point in rep.daily:
                e = point.estimates[m]["treatment"]
                if math.isnan(e.p_value):
                    continue
                smallest = min(smallest, e.p_value)
                assert e.p_value_sequential is not None
                assert e.p_value_sequential >= smallest * (1 - 1e-9), (seed, m, point.day)
                checked += 1
            (c,) = rep.metrics[METRICS.index(m)].comparisons
            assert c.p_value_sequential is not None and c.p_value_sequential >= smallest * (
                1 - 1e-9
            )
    assert checked > 2000


def test_a_capped_metric_caps_each_look_at_the_percentile_of_its_own_units(
    tmp_path: Path,
) -> None:
    from tests.analysis.test_capping import CAPPED_YAML  # cap: {percentile: 90} on revenue

    root = novelty_archive(tmp_path, seed=4)
    events = _payloads(root)
    rep = build_report(experiment(CAPPED_YAML), root, options=ReportOptions(sequential_tau=TAU))
    assert len(rep.daily) >= 3
    for point in rep.daily:
        units = units_at(events, end_of(point.day))
        cap = float(np.percentile([u.rev for u in units.values()], 90))
        capped = [
            Unit(u.variant, u.conv, min(u.rev, cap), u.clicks, u.exposures) for u in units.values()
        ]
        ref = compare(capped, "revenue")
        got = point.estimates["revenue"]["treatment"]
        assert got.diff == pytest.approx(ref.diff, rel=1e-9, abs=1e-12), point.day
        assert got.var_diff == pytest.approx(ref.var, rel=1e-9), point.day
