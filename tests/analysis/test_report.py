"""The report: DESIGN.md's JSON shape, Holm across variants, SRM, optional keys."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest

from analysis import NoExposures, ReportOptions, analyse, build_report, stats
from analysis.sql import Look, build_plan
from tests.analysis.analysis_testkit import (
    T0,
    ArchiveWriter,
    aggregates_of,
    experiment,
    simulate_archive,
)

THREE = """
key: three-way
surface: home_top
variants:
  - {key: control, weight: 2, model: "models:/m/1"}
  - {key: b, weight: 1, model: "models:/m/2"}
  - {key: c, weight: 1, model: "models:/m/3"}
metrics:
  - {name: revenue, kind: mean, outcome: purchase}
"""


def test_json_has_exactly_the_design_shape(tmp_path: Path) -> None:
    root = simulate_archive(tmp_path, units=400, rates={"control": 0.2, "treatment": 0.25})
    d = json.loads(json.dumps(build_report(experiment(), root).to_dict()))
    assert list(d) == [
        "experiment",
        "control",
        "alpha",
        "variants",
        "srm",
        "metrics",
        "verdict",
        "phases",
        "skipped",
    ]
    assert d["skipped"]["lines"] == 0 and d["skipped"]["first"] == []
    # records without phase fields: one phase, the file's weights, nothing excluded
    (phase,) = d["phases"]
    assert (phase["id"], phase["weights"], phase["excluded"]) == (
        "",
        {"control": 50.0, "treatment": 50.0},
        {},
    )
    assert phase["srm_p_value"] == d["srm"]["p_value"]
    assert list(d["verdict"]) == ["decision", "reason", "variants"]
    assert d["verdict"]["decision"] in ("ship", "do_not_ship", "keep_running", "invalid")
    assert list(d["verdict"]["variants"]["treatment"]) == [
        "decision",
        "reason",
        "primary",
        "guardrails",
    ]
    assert d["verdict"]["variants"]["treatment"]["primary"] == "conversion"
    assert d["experiment"] == "home-recs-demo" and d["control"] == "control" and d["alpha"] == 0.05
    assert set(d["variants"]) == {"control", "treatment"}
    assert all(set(v) == {"units", "exposures"} for v in d["variants"].values())
    assert set(d["srm"]) == {"p_value", "expected_share"}
    assert d["srm"]["expected_share"] == {"control": 0.5, "treatment": 0.5}
    assert [m["name"] for m in d["metrics"]] == ["conversion", "revenue", "clicks_per_exposure"]
    # no metric says primary: the first non-guardrail one is, and the JSON says so
    assert [m["role"] for m in d["metrics"]] == ["primary", "secondary", "secondary"]
    for m in d["metrics"]:
        assert list(m) == [
            "name",
            "kind",
            "role",
            "direction",
            "values",
            "comparisons",
            "stratified",
        ]
        assert m["stratified"] is False
        (c,) = m["comparisons"]
        assert list(c) == [
            "variant",
            "diff",
            "diff_ci",
            "lift",
            "lift_ci",
            "p_value",
            "p_value_adjusted",
        ]
        assert c["variant"] == "treatment" and len(c["diff_ci"]) == 2 and len(c["lift_ci"]) == 2


def _three_way(seed: int = 0) -> tuple[list[Look], object]:
    import numpy as np

    exp = experiment(THREE)
    plan = build_plan(exp, "t")
    rng = np.random.default_rng(seed)
    means = {"control": 10.0, "b": 10.6, "c": 10.1}
    looks = [
        Look(
            v,
            T0.date(),
            aggregates_of({"exposures": np.ones(n), "y0": rng.normal(means[v], 5, n)}, []),
        )
        for v, n in (("control", 2000), ("b", 1000), ("c", 1000))
    ]
    return looks, plan


def test_holm_adjusts_across_the_non_control_variants() -> None:
    looks, plan = _three_way()
    rep = analyse(experiment(THREE), plan, looks)  # type: ignore[arg-type]
    comps = rep.metrics[0].comparisons
    assert [c.variant for c in comps] == ["b", "c"]
    raw = [c.p_value for c in comps]
    assert [c.p_value_adjusted for c in comps] == pytest.approx(stats.holm(raw))
    smallest = min(comps, key=lambda c: c.p_value)
    assert smallest.p_value < 0.01 and smallest.p_value_adjusted == pytest.approx(
        2 * smallest.p_value
    )
    assert rep.srm_p_value == pytest.approx(1.0)  # 2000/1000/1000 against weights 2/1/1


def test_srm_alarm_when_a_variant_loses_units(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(600):
        w.exposure(f"c{i}", "control", T0 + timedelta(seconds=i))
    for i in range(400):
        w.exposure(f"t{i}", "treatment", T0 + timedelta(seconds=i))
    rep = build_report(experiment(), w.write())
    assert rep.srm_alarm and rep.to_dict()["srm"]["p_value"] < 1e-9


def test_optional_keys_appear_only_with_their_option(tmp_path: Path) -> None:
    root = simulate_archive(tmp_path, units=600, rates={"control": 0.2, "treatment": 0.25}, days=4)
    opts = ReportOptions(
        cuped_window=timedelta(days=7), sequential_tau=0.1, power=0.8, target_mde=0.01
    )
    d = build_report(experiment(), root, options=opts).to_dict()
    conv = d["metrics"][0]
    assert conv["cuped"] is True and "cuped" not in d["metrics"][2]  # ratio metrics: no CUPED
    c = conv["comparisons"][0]
    assert 0 <= c["p_value_sequential"] <= 1 and c["p_value_sequential"] >= c["p_value"] * 0.5
    assert c["mde"] > 0 and c["target_mde"] == 0.01
    # se shrinks as 1/sqrt(days): the days to the target follow from the current MDE
    assert c["days_to_target"] == pytest.approx(4 * (c["mde"] / 0.01) ** 2 - 4)


def test_cuped_without_pre_period_data_equals_the_plain_analysis(tmp_path: Path) -> None:
    root = simulate_archive(tmp_path, units=500, rates={"control": 0.2, "treatment": 0.3})
    plain = build_report(experiment(), root).to_dict()["metrics"][1]["comparisons"][0]
    cuped = build_report(experiment(), root, options=ReportOptions(cuped_window=timedelta(days=7)))
    c = cuped.to_dict()["metrics"][1]["comparisons"][0]
    assert c["diff"] == pytest.approx(plain["diff"]) and c["p_value"] == pytest.approx(
        plain["p_value"]
    )


def test_cuped_uses_outcomes_in_the_window_before_first_exposure(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(40):
        v = "control" if i % 2 else "treatment"
        pre = float(i)
        w.outcome(f"u{i}", "purchase", T0 - timedelta(days=3), pre)  # inside a 7-day window
        w.outcome(f"u{i}", "purchase", T0 - timedelta(days=30), 1000.0)  # outside it
        w.exposure(f"u{i}", v, T0)
        w.outcome(
            f"u{i}", "purchase", T0 + timedelta(hours=1), pre + (1.0 if v == "treatment" else 0.0)
        )
    rep = build_report(
        experiment(), w.write(), options=ReportOptions(cuped_window=timedelta(days=7))
    )
    c = rep.metrics[1].comparisons[0]
    # y = x + 1{treatment} exactly: CUPED removes all the variance the pre-period explains
    assert c.diff == pytest.approx(1.0) and c.diff_ci[1] - c.diff_ci[0] < 1e-6


def test_no_exposures_is_an_error_naming_key_archive_and_window(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    w.exposure("u1", "control", T0, experiment="other")
    root = w.write()
    with pytest.raises(NoExposures) as info:
        build_report(experiment(), root)
    assert str(info.value) == (
        f"no exposures of experiment 'home-recs-demo' in archive {root} at any time "
        "(no --since/--until): check the key, the source and --since/--until"
    )
    w.exposure("u2", "control", T0)
    root = w.write()
    with pytest.raises(
        NoExposures, match=r"between 2026-11-21T09:00:00\+00:00 and 2026-11-22T09:00:00\+00:00:"
    ):
        build_report(experiment(), root, since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))


def test_too_few_units_give_nulls_not_errors(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    w.exposure("u1", "control", T0)
    d = build_report(experiment(), w.write()).to_dict()
    assert d["variants"]["treatment"] == {"units": 0, "exposures": 0}
    assert d["metrics"][0]["values"]["treatment"] is None
    assert d["metrics"][0]["comparisons"][0]["p_value"] is None
    assert d["verdict"]["decision"] == "keep_running"


def test_alpha_is_validated() -> None:
    with pytest.raises(ValueError, match="alpha"):
        analyse(experiment(), build_plan(experiment(), "t"), [], alpha=1.5)
    assert math.isnan(stats.srm_p_value({}, {"a": 1.0}))
