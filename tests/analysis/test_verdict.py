"""The verdict, branch by branch, on hand-built reports (analysis/verdict.py)."""

from __future__ import annotations

import math

import pytest

from analysis import Comparison, MetricResult, Power, Report, VariantSummary, decide
from analysis.verdict import guardrail_status
from experiments import Experiment, parse_experiment

HEAD = """key: exp
surface: home_top
variants:
  - {key: control, weight: 1, model: "models:/m/1"}
  - {key: b, weight: 1, model: "models:/m/2"}
"""
METRICS = """metrics:
  - {name: conversion, kind: proportion, outcome: purchase, role: primary}
  - {name: complaints, kind: proportion, outcome: complaint, role: guardrail, direction: decrease, margin: 0.02}
"""
NAN = math.nan


def _exp(text: str = HEAD + METRICS) -> Experiment:
    return parse_experiment(text)


def comp(
    lift: float,
    lo: float,
    hi: float,
    p: float,
    variant: str = "b",
    *,
    power: Power | None = None,
    p_seq: float | None = None,
) -> Comparison:
    """A comparison whose diff has the lift's sign (control value 1)."""
    return Comparison(variant, lift, (lo, hi), lift, (lo, hi), p, p, p_seq, power)


def report(
    metrics: dict[str, list[Comparison]], *, srm: float = 0.5, experiment: Experiment | None = None
) -> Report:
    e = experiment or _exp()
    variants = {k: VariantSummary(1000, 2000) for k in e.variant_keys}
    results = [
        MetricResult(
            name,
            "proportion",
            {k: 1.0 for k in e.variant_keys},
            comps,
            role=e.metrics[[m.name for m in e.metrics].index(name)].role,
        )
        for name, comps in metrics.items()
    ]
    return Report(e.key, "control", 0.05, variants, srm, e.expected_shares, results)


OK_GUARD = comp(-0.001, -0.01, 0.008, 0.8)  # complaints down or flat: harm < 2% ruled out


def test_a_significant_win_with_guardrails_ok_ships() -> None:
    v = decide(
        report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [OK_GUARD]}), _exp()
    )
    assert v.decision == "ship" and v.variants["b"].decision == "ship"
    assert v.variants["b"].guardrails == {"complaints": "ok"}
    assert v.variants["b"].primary == "conversion"
    assert v.variants["b"].primary_comparison is not None
    assert (
        "conversion" in v.reason and "+5.00%" in v.reason and v.reason.startswith("b beats control")
    )


def test_a_significant_loss_does_not_ship() -> None:
    v = decide(
        report({"conversion": [comp(-0.05, -0.08, -0.02, 0.001)], "complaints": [OK_GUARD]}), _exp()
    )
    assert v.decision == "do_not_ship"
    assert "significantly worse" in v.reason and "conversion" in v.reason and "-5.00%" in v.reason


def test_a_breached_guardrail_vetoes_a_win() -> None:
    # complaints (lower is better) up 5% [3%, 7%]: significantly worse.
    breached = comp(0.05, 0.03, 0.07, 0.0001)
    v = decide(
        report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [breached]}), _exp()
    )
    assert v.decision == "do_not_ship"
    assert v.variants["b"].guardrails == {"complaints": "breached"}
    assert "guardrail complaints is breached" in v.reason and "margin 2.00%" in v.reason


def test_an_inconclusive_guardrail_keeps_a_win_running() -> None:
    # complaints +1% [-1%, +3%]: harm up to 3% not ruled out (margin 2%), not significant either.
    unsure = comp(0.01, -0.01, 0.03, 0.3)
    v = decide(
        report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [unsure]}), _exp()
    )
    assert v.decision == "keep_running"
    assert v.variants["b"].guardrails == {"complaints": "inconclusive"}
    assert "guardrail complaints is inconclusive" in v.reason


def test_an_inconclusive_primary_keeps_running_and_names_the_power() -> None:
    pw = Power(mde=0.041, target_mde=0.02, days_to_target=6.0)
    v = decide(
        report({"conversion": [comp(0.01, -0.01, 0.03, 0.3, power=pw)], "complaints": [OK_GUARD]}),
        _exp(),
    )
    assert v.decision == "keep_running"
    assert "conversion is inconclusive" in v.reason
    assert "4.10%" in v.reason and "6.0 more days" in v.reason and "2.00%" in v.reason
    assert "guardrails not yet shown ok" not in v.reason
    unsure = decide(
        report(
            {
                "conversion": [comp(0.01, -0.01, 0.03, 0.3)],
                "complaints": [comp(0.01, -0.01, 0.03, 0.3)],
            }
        ),
        _exp(),
    )
    assert unsure.reason.endswith("guardrails not yet shown ok: complaints.")


def test_srm_makes_the_report_invalid_whatever_the_lifts() -> None:
    v = decide(
        report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [OK_GUARD]}, srm=1e-6),
        _exp(),
    )
    assert v.decision == "invalid" and v.variants["b"].decision == "invalid"
    assert "sample ratio mismatch" in v.reason and "1e-06" in v.reason


def test_srm_reads_every_p_value_the_report_lists() -> None:
    class PhasedReport(Report):
        __slots__ = ()

        @property
        def srm_p_values(self) -> tuple[float, ...]:
            return (0.4, 0.0002)

    base = report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [OK_GUARD]})
    phased = PhasedReport(*(getattr(base, f) for f in Report.__dataclass_fields__))
    assert decide(phased, _exp()).decision == "invalid"


def test_no_metrics_keeps_running() -> None:
    e = _exp(HEAD)
    v = decide(report({}, experiment=e), e)
    assert (v.decision, v.reason) == ("keep_running", "no metrics")


def test_a_decrease_metric_wins_when_it_goes_down() -> None:
    e = _exp(HEAD + "metrics:\n  - {name: latency, kind: mean, outcome: ms, direction: decrease}\n")
    down = decide(report({"latency": [comp(-0.1, -0.15, -0.05, 0.001)]}, experiment=e), e)
    up = decide(report({"latency": [comp(0.1, 0.05, 0.15, 0.001)]}, experiment=e), e)
    assert (down.decision, up.decision) == ("ship", "do_not_ship")
    assert "lower is better" in down.reason


def test_the_first_non_guardrail_is_primary_when_none_is_declared() -> None:
    e = _exp(
        HEAD + "metrics:\n  - {name: complaints, kind: proportion, outcome: c, role: guardrail, "
        "direction: decrease, margin: 0.02}\n  - {name: conversion, kind: proportion, outcome: p}\n"
    )
    v = decide(
        report(
            {"complaints": [OK_GUARD], "conversion": [comp(0.05, 0.02, 0.08, 0.001)]}, experiment=e
        ),
        e,
    )
    assert v.decision == "ship" and v.variants["b"].primary == "conversion"


def test_only_guardrails_never_ship() -> None:
    e = _exp(
        HEAD
        + "metrics:\n  - {name: g, kind: proportion, outcome: c, role: guardrail, margin: 0.02}\n"
    )
    v = decide(report({"g": [comp(0.05, 0.02, 0.08, 0.001)]}, experiment=e), e)
    assert v.decision == "keep_running" and "no primary metric" in v.reason


def test_an_unestimable_primary_keeps_running() -> None:
    v = decide(report({"conversion": [comp(NAN, NAN, NAN, NAN)], "complaints": [OK_GUARD]}), _exp())
    assert v.decision == "keep_running" and "cannot be estimated" in v.reason


def test_sequential_p_value_must_also_be_below_alpha() -> None:
    win = comp(0.05, 0.02, 0.08, 0.001, p_seq=0.2)
    v = decide(report({"conversion": [win], "complaints": [OK_GUARD]}), _exp())
    assert v.decision == "keep_running" and "0.2000" in v.reason


THREE = HEAD + "  - {key: c, weight: 1, model: 'models:/m/3'}\n" + METRICS


def test_with_several_variants_the_best_winner_is_named() -> None:
    e = _exp(THREE)
    r = report(
        {
            "conversion": [comp(0.03, 0.01, 0.05, 0.01), comp(0.06, 0.03, 0.09, 0.001, "c")],
            "complaints": [OK_GUARD, comp(-0.001, -0.01, 0.008, 0.8, "c")],
        },
        experiment=e,
    )
    v = decide(r, e)
    assert v.decision == "ship" and v.reason.startswith("c beats control on conversion")
    assert v.reason.endswith("the best primary lift (also winning: b).")
    assert {k: x.decision for k, x in v.variants.items()} == {"b": "ship", "c": "ship"}


def test_one_loser_and_one_unsure_variant_keeps_running() -> None:
    e = _exp(THREE)
    r = report(
        {
            "conversion": [comp(-0.03, -0.05, -0.01, 0.01), comp(0.01, -0.01, 0.03, 0.4, "c")],
            "complaints": [OK_GUARD, comp(-0.001, -0.01, 0.008, 0.8, "c")],
        },
        experiment=e,
    )
    v = decide(r, e)
    assert v.decision == "keep_running" and v.variants["b"].decision == "do_not_ship"
    assert "for c" in v.reason


def test_every_variant_losing_is_do_not_ship() -> None:
    e = _exp(THREE)
    r = report(
        {
            "conversion": [comp(-0.03, -0.05, -0.01, 0.01), comp(0.01, -0.01, 0.03, 0.4, "c")],
            "complaints": [OK_GUARD, comp(0.05, 0.03, 0.07, 0.001, "c")],
        },
        experiment=e,
    )
    v = decide(r, e)
    assert v.decision == "do_not_ship" and "b is significantly worse" in v.reason
    assert "guardrail complaints is breached by c" in v.reason


@pytest.mark.parametrize(
    ("direction", "lo", "hi", "expected"),
    [
        ("increase", -0.019, 0.05, "ok"),  # lo > -margin
        ("increase", -0.021, 0.05, "inconclusive"),
        ("increase", -0.05, -0.001, "breached"),  # hi < 0
        ("increase", -0.05, 0.0, "inconclusive"),
        ("decrease", -0.05, 0.019, "ok"),  # oriented: (-0.019, 0.05)
        ("decrease", 0.001, 0.05, "breached"),
        ("increase", NAN, NAN, "inconclusive"),
    ],
)
def test_guardrail_status_against_the_margin(
    direction: str, lo: float, hi: float, expected: str
) -> None:
    e = _exp(
        HEAD + "metrics:\n  - {name: g, kind: mean, outcome: x, role: guardrail, "
        f"direction: {direction}, margin: 0.02}}\n"
    )
    assert guardrail_status(e.metrics[0], comp((lo + hi) / 2, lo, hi, 0.5)) == expected


def test_the_json_report_carries_the_verdict_and_metric_roles() -> None:
    from dataclasses import replace

    e = _exp()
    r = report({"conversion": [comp(0.05, 0.02, 0.08, 0.001)], "complaints": [OK_GUARD]})
    d = replace(r, verdict=decide(r, e)).to_dict()
    assert d["verdict"]["decision"] == "ship"
    assert d["verdict"]["variants"]["b"] == {
        "decision": "ship",
        "reason": d["verdict"]["variants"]["b"]["reason"],
        "primary": "conversion",
        "guardrails": {"complaints": "ok"},
    }
