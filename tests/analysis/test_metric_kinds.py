"""The metric-kind registry: every kind the schema accepts has one estimator, found by kind."""

from __future__ import annotations

import typing

import pytest

from analysis.metrics import ESTIMATORS, UnitTotals, estimator_for
from analysis.metrics.mean import MeanMetric
from analysis.metrics.proportion import ProportionMetric
from analysis.metrics.ratio import RatioMetric
from experiments import Metric


def test_every_kind_the_schema_accepts_has_exactly_one_estimator() -> None:
    assert set(ESTIMATORS) == set(typing.get_args(Metric.model_fields["kind"].annotation))
    assert {type(e) for e in ESTIMATORS.values()} == {ProportionMetric, MeanMetric, RatioMetric}


def test_a_metric_finds_the_estimator_of_its_kind() -> None:
    ratio = Metric(name="ctr", kind="ratio", numerator="click", denominator="exposures")
    assert isinstance(estimator_for(ratio), RatioMetric)
    assert isinstance(estimator_for(Metric(name="m", kind="mean", outcome="buy")), MeanMetric)


def test_an_unknown_kind_is_an_error_naming_the_metric_and_the_known_kinds() -> None:
    odd = Metric.model_construct(name="weird", kind="median", outcome="buy")
    with pytest.raises(ValueError, match=r"metric weird: unknown kind 'median' \(known: "):
        estimator_for(odd)


def test_each_kind_writes_its_own_per_unit_columns() -> None:
    totals = UnitTotals({"click": 0, "buy": 1})
    prop = Metric(name="conv", kind="proportion", outcome="click")
    sql = estimator_for(prop).sql(prop, 0, totals, cuped=True)
    assert sql.exprs == [
        "CASE WHEN cnt_0 > 0 THEN 1.0 ELSE 0.0 END AS y0",
        "CASE WHEN pre_cnt_0 > 0 THEN 1.0 ELSE 0.0 END AS x0",
    ]
    assert (sql.columns.y, sql.columns.x, sql.pairs) == ("y0", "x0", [("y0", "x0")])
    mean = Metric(name="rev", kind="mean", outcome="buy", cap={"percentile": 99})
    sql = estimator_for(mean).sql(mean, 1, totals, cuped=False)
    assert sql.exprs == [
        "LEAST(CAST(sum_1 AS DOUBLE), QUANTILE_CONT(CAST(sum_1 AS DOUBLE), 0.99) OVER "
        "(PARTITION BY look)) AS y1"
    ]
    assert (sql.columns.x, sql.pairs) == ("", [])
    ratio = Metric(name="ctr", kind="ratio", numerator="click", denominator="exposures")
    sql = estimator_for(ratio).sql(ratio, 2, totals, cuped=True)
    assert sql.exprs == [
        "CAST(cnt_0 AS DOUBLE) AS num2",
        "CAST(exposures AS DOUBLE) AS den2",
    ]
    assert sql.pairs == [("num2", "den2")]
