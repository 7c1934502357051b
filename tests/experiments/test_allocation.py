"""Allocation phases: which changes start a new phase, and which do not."""

from __future__ import annotations

from experiments.allocation import phase_of
from tests.experiments.helpers import experiment

VERSIONS = ["1", "7"]


def _id(**fields: object) -> str:
    return phase_of(experiment(**fields), "surface:home_top", 0.0, VERSIONS).id


def _variants(c: float, t: float) -> list[dict[str, object]]:
    return [
        {"key": "control", "weight": c, "model": "models:/home_recs/1"},
        {"key": "treatment", "weight": t, "model": "models:/home_recs/7"},
    ]


def test_a_weight_ramp_starts_a_new_phase_and_going_back_returns_to_the_first() -> None:
    first, ramped = _id(variants=_variants(90, 10)), _id(variants=_variants(50, 50))
    assert first != ramped
    assert _id(variants=_variants(90, 10)) == first


def test_proportional_weights_are_the_same_allocation() -> None:
    assert _id(variants=_variants(50, 50)) == _id(variants=_variants(1, 1))


def test_traffic_targeting_layer_slice_and_salt_each_start_a_phase() -> None:
    base = _id()
    changed = {
        _id(traffic=0.5),
        _id(targeting="country == 'JP'"),
        _id(layer_range=(0.0, 0.5)),
        _id(salt="other"),
    }
    assert base not in changed and len(changed) == 4


def test_the_layer_holdout_and_served_versions_are_part_of_the_phase() -> None:
    e = experiment()
    base = phase_of(e, "surface:home_top", 0.0, VERSIONS).id
    assert phase_of(e, "surface:home_top", 0.05, VERSIONS).id != base
    assert phase_of(e, "surface:home_top", 0.0, ["2", "7"]).id != base  # a re-pin


def test_labels_metrics_status_and_forced_units_do_not_start_a_phase() -> None:
    base = _id()
    assert _id(description="new words", owner="me") == base
    assert _id(metrics=[{"name": "c", "kind": "proportion", "outcome": "buy"}]) == base
    assert _id(status="running", forced={"qa-1": "treatment"}) == base


def test_the_logged_weights_keep_bucket_order_and_read_as_written() -> None:
    phase = phase_of(experiment(variants=_variants(90, 10.5)), "surface:home_top", 0.0, VERSIONS)
    assert phase.weights == (
        {"variant": "control", "weight": 90, "lo": 0, "hi": 8955},
        {"variant": "treatment", "weight": 10.5, "lo": 8955, "hi": 10_000},
    )
