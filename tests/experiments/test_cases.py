"""Pinned cases (tests/experiments/cases.json), fed to pytest like GrowthBook's cases.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.assignment import assign, bucket, python_bucket
from experiments.layers import LayerPlan, holdout_bucket, layer_bucket, slice_bounds
from experiments.targeting import TargetingError, compile_condition
from experiments.traffic import in_traffic, traffic_bucket

CASES: dict[str, Any] = json.loads((Path(__file__).parent / "cases.json").read_text())
# A pinned copy of ../shared/assignment_vectors.json, so a clone anywhere runs the vectors.
PINNED = Path(__file__).parent / "assignment_vectors.json"
SHARED = Path(__file__).parents[3] / "shared" / "assignment_vectors.json"
VECTORS: dict[str, Any] = json.loads(PINNED.read_text())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for group in ("traffic", "layers", "targeting", "targeting_errors"):
        arg = f"{group}_case"
        if arg in metafunc.fixturenames:
            metafunc.parametrize(arg, CASES[group], ids=[str(i) for i in range(len(CASES[group]))])
    if "vector" in metafunc.fixturenames:
        metafunc.parametrize("vector", VECTORS["cases"])


def test_assignment_vectors_still_hold(vector: dict[str, Any]) -> None:
    keys = [k for k, _ in vector["weights"]]
    weights = [w for _, w in vector["weights"]]
    assert bucket(vector["salt"], vector["unit_id"]) == vector["bucket"]
    assert python_bucket(vector["salt"], vector["unit_id"]) == vector["bucket"]
    assert assign(vector["salt"], vector["unit_id"], keys, weights) == vector["variant"]


def test_pinned_vectors_match_the_shared_ones() -> None:
    if not SHARED.exists():
        pytest.skip(f"no shared vectors at {SHARED} (a clone outside the workspace)")
    assert json.loads(SHARED.read_text()) == VECTORS
    assert len(VECTORS["cases"]) >= 100


def test_traffic_case(traffic_case: dict[str, Any]) -> None:
    c = traffic_case
    assert traffic_bucket(c["salt"], c["unit_id"]) == c["traffic_bucket"]
    assert in_traffic(c["salt"], c["unit_id"], c["traffic"]) is c["in_experiment"]


def test_layers_case(layers_case: dict[str, Any]) -> None:
    c = layers_case
    assert layer_bucket(c["layer_salt"], c["unit_id"]) == c["layer_bucket"]
    assert holdout_bucket(c["layer_salt"], c["unit_id"]) == c["holdout_bucket"]
    plan = LayerPlan.build(
        c["layer_salt"], c["holdout"], [(slice_bounds(s, e), k) for k, s, e in c["slices"]]
    )
    assert plan.held_out(c["unit_id"]) is c["held_out"]
    member = None if plan.held_out(c["unit_id"]) else plan.member(c["unit_id"])
    assert member == c["experiment"]


def test_targeting_case(targeting_case: dict[str, Any]) -> None:
    c = targeting_case
    assert compile_condition(c["expression"])(c["attributes"]) is c["match"]


def test_targeting_error_case(targeting_errors_case: dict[str, Any]) -> None:
    c = targeting_errors_case
    with pytest.raises(TargetingError) as info:
        compile_condition(c["expression"])
    assert info.value.column == c["column"], str(info.value)
