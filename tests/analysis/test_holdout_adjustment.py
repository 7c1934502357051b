"""The holdout comparisons (every arm × every metric against the layer's holdout) are one
family: their p-values are Holm-adjusted across it, in the JSON, the table and the HTML."""

from __future__ import annotations

import io
import json
import math
from datetime import date

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as st

from analysis import analyse
from analysis.render_html import render_html
from analysis.render_table import holdout_table
from analysis.report import Report
from analysis.sql import HOLDOUT, Look, build_plan
from tests.analysis.analysis_testkit import aggregates_of, experiment

YAML = """
key: home-recs-demo
surface: home_top
status: running
variants:
  - {key: control,   weight: 34, model: "models:/home_recs@champion"}
  - {key: treatment, weight: 33, model: "models:/home_recs/7"}
  - {key: other,     weight: 33, model: "models:/home_recs/8"}
metrics:
  - {name: conversion, kind: proportion, outcome: purchase}
  - {name: revenue, kind: mean, outcome: purchase}
  - {name: clicks_per_exposure, kind: ratio, numerator: click, denominator: exposures}
"""
EXP = experiment(YAML)
PLAN = build_plan(EXP, "t")
ARMS = ("control", "treatment", "other")
DAY0 = date(2026, 11, 20)


def units(rng: np.random.Generator, n: int, boost: float = 1.0) -> dict[str, np.ndarray]:
    """Per-unit columns: conversion, revenue (lognormal when converted), clicks, exposures."""
    exposures = rng.integers(1, 5, n).astype(float)
    conv = (rng.random(n) < 0.1 * boost).astype(float)
    return {
        "exposures": exposures,
        "y0": conv,
        "y1": conv * rng.lognormal(3.0, 1.0, n),
        "num2": rng.poisson(0.3 * exposures * boost).astype(float),
        "den2": exposures,
    }


def report(seed: int, n: int = 2000, held: int = 2000, boost: float = 1.0) -> Report:
    """An experiment with a holdout, looked at once; ``boost`` scales every arm's rates."""
    rng = np.random.default_rng(seed)
    pairs = [("num2", "den2")]
    looks = [Look(v, DAY0, aggregates_of(units(rng, n, boost), pairs)) for v in ARMS]
    looks.append(Look(HOLDOUT, DAY0, aggregates_of(units(rng, held), pairs)))
    return analyse(EXP, PLAN, looks)


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm (1979), written out: the i-th smallest p times (m − i + 1), running max, cap 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [0.0] * len(p)
    best = 0.0
    for rank, i in enumerate(order):
        best = max(best, min(1.0, (len(p) - rank) * p[i]))
        out[i] = best
    return out


def test_holdout_p_values_are_holm_adjusted_across_every_arm_and_metric() -> None:
    rep = report(seed=3, boost=1.15)  # a real effect, so some p are small and the order matters
    assert rep.holdout is not None
    comps = rep.holdout.comparisons
    assert len(comps) == 9 and rep.holdout.family == 9
    expected = holm_by_hand([c.p_value for c in comps])
    assert [c.p_value_adjusted for c in comps] == pytest.approx(expected, rel=1e-12)
    assert any(c.p_value_adjusted > c.p_value for c in comps)
    assert min(c.p_value for c in comps) < 0.01  # the family held something to adjust

    doc = json.loads(json.dumps(rep.to_dict()))["holdout"]
    assert doc["adjustment"] == {"p_value": "holm", "family": 9, "intervals": "unadjusted"}
    assert [c["p_value_adjusted"] for c in doc["comparisons"]] == pytest.approx(expected)

    out = io.StringIO()
    Console(file=out, width=200).print(holdout_table(rep))
    text = out.getvalue()
    assert "p Holm" in text and "CI (unadj.)" in text and "CIs unadjusted" in text
    page = render_html(rep)
    assert "<th>p Holm</th>" in page and "diff CI (unadjusted)" in page


def test_a_holdout_of_one_unit_has_no_p_value_for_any_metric() -> None:
    """One unit has no sample variance: neither Welch nor the delta method may claim one (the
    ratio's variance of 0 once gave p ~ 1e-86 against a single held-out unit)."""
    rng = np.random.default_rng(0)
    pairs = [("num2", "den2")]
    looks = [Look(v, DAY0, aggregates_of(units(rng, 500), pairs)) for v in ARMS]
    looks.append(Look(HOLDOUT, DAY0, aggregates_of(units(rng, 1), pairs)))
    rep = analyse(EXP, PLAN, looks)
    assert rep.holdout is not None and rep.holdout.family == 0
    assert all(math.isnan(c.p_value) for c in rep.holdout.comparisons)
    assert all(math.isnan(c.p_value_adjusted) for c in rep.holdout.comparisons)


def test_a_holdout_comparison_without_a_p_value_is_not_counted_in_the_family() -> None:
    rng = np.random.default_rng(0)
    pairs = [("num2", "den2")]
    looks = [Look(v, DAY0, aggregates_of(units(rng, 500), pairs)) for v in ARMS]
    held = units(rng, 50)
    held["den2"][:] = 0  # no denominator in the holdout: the ratio has no value (Welch has)
    looks.append(Look(HOLDOUT, DAY0, aggregates_of(held, pairs)))
    rep = analyse(EXP, PLAN, looks)
    assert rep.holdout is not None
    comps = rep.holdout.comparisons
    known = [c for c in comps if not math.isnan(c.p_value)]
    assert 0 < len(known) < len(comps) and rep.holdout.family == len(known)
    assert all(math.isnan(c.p_value_adjusted) for c in comps if math.isnan(c.p_value))
    expected = holm_by_hand([c.p_value for c in known])
    assert [c.p_value_adjusted for c in known] == pytest.approx(expected, rel=1e-12)


def test_holm_keeps_the_family_wise_false_positive_rate_of_the_holdout_comparisons() -> None:
    """A/A with a holdout (3 arms × 3 metrics, nothing differs): how often any of the nine
    comparisons has p < 0.05. Unadjusted that is far above 5% (nine correlated tests);
    Holm-adjusted it stays within the 99.9% binomial band of 5% (or below)."""
    sims = 400
    any_raw = any_adjusted = 0
    for seed in range(sims):
        held = report(seed).holdout
        assert held is not None
        any_raw += any(c.p_value < 0.05 for c in held.comparisons)
        any_adjusted += any(c.p_value_adjusted < 0.05 for c in held.comparisons)
    upper = st.binom.ppf(0.9995, sims, 0.05) / sims
    print(f"family-wise false positives: raw {any_raw / sims:.3f}, Holm {any_adjusted / sims:.3f}")
    assert any_adjusted / sims <= upper
    assert any_raw / sims >= 0.15  # nine tests: unadjusted, clearly above 5%
