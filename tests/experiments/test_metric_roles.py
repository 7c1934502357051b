"""Metric roles, directions, guardrail margins and caps: defaults and located errors."""

from __future__ import annotations

import pytest

from experiments.config import parse_experiment
from experiments.errors import ConfigError

BASE = """key: exp
surface: home_top
variants:
  - {key: control, weight: 50, model: "models:/home_recs/1"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
metrics:
"""


def _issues(metrics: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_experiment(BASE + metrics, "exp.yaml")
    return [str(i) for i in info.value.issues]


def test_defaults_are_secondary_increase_no_margin_no_cap() -> None:
    e = parse_experiment(BASE + "  - {name: conversion, kind: proportion, outcome: purchase}\n")
    (m,) = e.metrics
    assert (m.role, m.direction, m.margin, m.cap) == ("secondary", "increase", None, None)


def test_the_primary_is_the_declared_one() -> None:
    e = parse_experiment(
        BASE
        + "  - {name: a, kind: proportion, outcome: x}\n"
        + "  - {name: b, kind: mean, outcome: x, role: primary, direction: decrease}\n"
    )
    assert e.primary_metric is not None and e.primary_metric.name == "b"
    assert e.primary_metric.direction == "decrease"


def test_without_a_declared_primary_the_first_non_guardrail_is_primary() -> None:
    e = parse_experiment(
        BASE
        + "  - {name: g, kind: proportion, outcome: x, role: guardrail, margin: 0.01}\n"
        + "  - {name: a, kind: mean, outcome: x}\n"
        + "  - {name: b, kind: mean, outcome: x}\n"
    )
    assert e.primary_metric is not None and e.primary_metric.name == "a"


def test_only_guardrails_or_no_metrics_means_no_primary() -> None:
    only = parse_experiment(
        BASE + "  - {name: g, kind: proportion, outcome: x, role: guardrail, margin: 0}\n"
    )
    assert only.primary_metric is None
    assert parse_experiment(BASE.replace("metrics:\n", "")).primary_metric is None


def test_two_primaries_are_an_error_naming_file_line_and_field() -> None:
    issues = _issues(
        "  - {name: a, kind: proportion, outcome: x, role: primary}\n"
        "  - {name: b, kind: mean, outcome: x, role: primary}\n"
    )
    assert issues == [
        "exp.yaml:6: field 'metrics' at most one metric may have role: primary; "
        "2 do (metrics[0] a, metrics[1] b)"
    ]


def test_a_guardrail_needs_a_margin() -> None:
    assert _issues("  - {name: g, kind: proportion, outcome: x, role: guardrail}\n") == [
        "exp.yaml:7: field 'metrics[0].margin' a guardrail needs 'margin', "
        "the relative harm you accept, e.g. 0.01"
    ]


def test_margin_is_for_guardrails_only_and_not_negative() -> None:
    (issue,) = _issues("  - {name: a, kind: proportion, outcome: x, margin: 0.1}\n")
    assert issue.startswith("exp.yaml:7: field 'metrics[0].margin' is for guardrails only")
    (issue,) = _issues("  - {name: g, kind: mean, outcome: x, role: guardrail, margin: -0.1}\n")
    assert (
        issue.startswith("exp.yaml:7: field 'metrics[0].margin'")
        and "greater than or equal to 0" in issue
    )


def test_cap_is_for_mean_metrics_with_a_percentile_strictly_inside_0_100() -> None:
    e = parse_experiment(BASE + "  - {name: r, kind: mean, outcome: x, cap: {percentile: 99.9}}\n")
    assert e.metrics[0].cap is not None and e.metrics[0].cap.percentile == 99.9
    (issue,) = _issues("  - {name: c, kind: proportion, outcome: x, cap: {percentile: 99}}\n")
    assert issue == (
        "exp.yaml:7: field 'metrics[0].cap' is for mean metrics only (this metric is a proportion)"
    )
    for bad in ("0", "100", "-5"):
        (issue,) = _issues(f"  - {{name: r, kind: mean, outcome: x, cap: {{percentile: {bad}}}}}\n")
        assert issue.startswith("exp.yaml:7: field 'metrics[0].cap.percentile'")


def test_direction_must_be_increase_or_decrease() -> None:
    (issue,) = _issues("  - {name: a, kind: mean, outcome: x, direction: up}\n")
    assert issue.startswith("exp.yaml:7: field 'metrics[0].direction'")


def test_block_style_errors_point_at_the_offending_line() -> None:
    issues = _issues(
        "  - name: g\n    kind: proportion\n    outcome: x\n    role: guardrail\n    margin: -1\n"
    )
    assert issues[0].startswith("exp.yaml:11: field 'metrics[0].margin'")
