"""A report is bit-reproducible: the same archive gives the same JSON bytes, run after run and
whatever DuckDB's thread count (sql.py, "Reproducible"), and its figures are still the exact
statistics of the data (numpy/scipy, to 1e-9)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from analysis import build_report
from analysis.archive import ArchiveSource
from analysis.options import ReportOptions
from analysis.sql import HOLDOUT
from tests.analysis.analysis_testkit import T0, ArchiveWriter, experiment

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
  - {name: revenue_capped, kind: mean, outcome: purchase, cap: {percentile: 99}}
  - {name: clicks_per_exposure, kind: ratio, numerator: click, denominator: exposures}
"""


def float_archive(
    root: Path, units: int = 6000, seed: int = 7
) -> tuple[Path, dict[str, list[float]]]:
    """Units over 4 days in 3 arms and the holdout, several purchases each with values spread
    over many magnitudes (so a sum's last bits depend on its order), spread over many hourly
    files (so DuckDB's threads see parts of one unit), and purchases before exposure (CUPED).
    Returns the archive and, per arm, every unit's total revenue after its exposure."""
    rng = np.random.default_rng(seed)
    w = ArchiveWriter(root)
    totals: dict[str, list[float]] = defaultdict(list)
    arms = ["control", "treatment", "other", HOLDOUT]
    for u in range(units):
        v = arms[int(rng.integers(4))]
        t = T0 + timedelta(days=int(rng.integers(4)), minutes=int(rng.integers(1200)))
        for k in range(int(rng.integers(1, 4))):
            w.exposure(f"u{u}", v, t + timedelta(minutes=37 * k), holdout=v == HOLDOUT,
                       attributes={"platform": "ios" if u % 3 else "web"})  # fmt: skip
        if rng.random() < 0.5:  # the covariate: purchases in the 14 days before exposure
            w.outcome(f"u{u}", "purchase", t - timedelta(hours=int(rng.integers(1, 300))),
                      float(rng.lognormal(2, 1.5)))  # fmt: skip
        total = 0.0
        for _ in range(int(rng.poisson(1.5))):
            value = float(rng.lognormal(2, 2)) * (1e-3 if rng.random() < 0.3 else 1.0)
            w.outcome(f"u{u}", "purchase", t + timedelta(hours=int(rng.integers(0, 60))), value)
            total += value
        for _ in range(int(rng.poisson(2.0))):
            w.outcome(f"u{u}", "click", t + timedelta(minutes=int(rng.integers(1, 3000))))
        totals[v].append(total)
    return w.write(), totals


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    return float_archive(tmp_path_factory.mktemp("reproducible"))


def report_json(root: Path, threads: int) -> str:
    opts = ReportOptions(
        cuped_window=timedelta(days=14),
        sequential_tau=0.1,
        power=0.8,
        target_mde=0.05,
        segment="platform",
    )
    rep = build_report(experiment(YAML), ArchiveSource(root, threads=threads), opts)
    return json.dumps(rep.to_dict(), indent=2)  # as `abgate report --format json` prints it


def test_report_json_is_byte_identical_across_runs_and_thread_counts(
    archive: tuple[Path, dict[str, list[float]]],
) -> None:
    root, _ = archive
    outputs = [report_json(root, t) for t in (1, 4, 2, 4, 3, 1, 4)]
    assert all(o == outputs[0] for o in outputs[1:]), [
        i for i, o in enumerate(outputs) if o != outputs[0]
    ]
    doc = json.loads(outputs[0])
    revenue = next(m for m in doc["metrics"] if m["name"] == "revenue")
    assert revenue["cuped"] is True and "holdout" in doc and "segments" in doc  # all options
    assert revenue["comparisons"][0]["p_value_sequential"] is not None


def test_reproducible_figures_are_still_the_exact_statistics(
    archive: tuple[Path, dict[str, list[float]]],
) -> None:
    """Without CUPED: the revenue means and Welch's comparison are numpy's and scipy's."""
    root, totals = archive
    rep = build_report(experiment(YAML), ArchiveSource(root, threads=4))
    revenue = next(m for m in rep.metrics if m.name == "revenue")
    for v in ("control", "treatment", "other"):
        assert revenue.values[v] == pytest.approx(float(np.mean(totals[v])), rel=1e-9)
    y_t, y_c = np.array(totals["treatment"]), np.array(totals["control"])
    welch = sps.ttest_ind(y_t, y_c, equal_var=False)
    comp = revenue.comparisons[0]
    assert comp.variant == "treatment"
    assert comp.diff == pytest.approx(float(y_t.mean() - y_c.mean()), rel=1e-9)
    assert comp.p_value == pytest.approx(float(welch.pvalue), rel=1e-9)
    ci = welch.confidence_interval(0.95)
    assert comp.diff_ci[0] == pytest.approx(float(ci.low), rel=1e-9)
    assert comp.diff_ci[1] == pytest.approx(float(ci.high), rel=1e-9)
    assert not math.isnan(comp.lift)


@pytest.mark.parametrize("threads", [1, 4])
def test_duckdb_adds_an_ordered_float_sum_sequentially_in_that_order(threads: int) -> None:
    """The engine property the report relies on: DuckDB keeps ``ORDER BY`` in SUM, AVG,
    VAR_SAMP and COVAR_SAMP of DOUBLE (its optimizer drops it from aggregates it deems
    order-independent) and adds in that order. Values of wildly different magnitudes make any
    other order give other bits (the plain SUM does, with threads)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(
        "CREATE TABLE t AS SELECT i % 3 AS g, (hash(i) % 1000003 / 7.3)"
        " * (CASE WHEN i % 5 = 0 THEN 1e12 ELSE 1 END) * (CASE WHEN i % 2 = 0 THEN -1 ELSE 1 END)"
        " AS x FROM range(600000) r(i)"
    )
    got = dict(con.execute("SELECT g, SUM(x ORDER BY x) FROM t GROUP BY g").fetchall())
    avg = dict(con.execute("SELECT g, AVG(x ORDER BY x) FROM t GROUP BY g").fetchall())
    for g in range(3):
        xs = sorted(float(x) for (x,) in con.execute(f"SELECT x FROM t WHERE g = {g}").fetchall())
        total = 0.0
        for x in xs:
            total += x
        assert got[g] == total
        assert avg[g] == total / len(xs)
