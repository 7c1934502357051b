"""Layers: mutual exclusion inside a layer, orthogonality across layers, the holdout."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.layers import LayerPlan, in_holdout, layer_bucket, slice_bounds

units = st.text(min_size=1, max_size=24)


def _plan(salt: str = "recs", holdout: float = 0.0) -> LayerPlan[str]:
    return LayerPlan.build(
        salt, holdout, [(slice_bounds(0, 0.3), "a"), (slice_bounds(0.3, 0.7), "b")]
    )


@given(unit=units)
def test_a_unit_is_in_at_most_one_experiment_of_a_layer(unit: str) -> None:
    plan = _plan()
    b = layer_bucket("recs", unit)
    expected = "a" if b < 3000 else "b" if b < 7000 else None
    assert plan.member(unit) == expected


def test_slices_take_their_share_of_units() -> None:
    plan = _plan()
    counts = Counter(plan.member(f"u{i}") for i in range(20_000))
    assert abs(counts["a"] / 20_000 - 0.3) < 0.015
    assert abs(counts["b"] / 20_000 - 0.4) < 0.015
    assert abs(counts[None] / 20_000 - 0.3) < 0.015


def test_experiments_on_different_layers_are_orthogonal() -> None:
    """Membership in one layer's slice says nothing about another's: the joint split factors."""
    one = LayerPlan.build("ranking", 0.0, [(slice_bounds(0, 0.5), "x")])
    two = LayerPlan.build("ui", 0.0, [(slice_bounds(0, 0.5), "y")])
    joint = Counter((one.member(f"u{i}"), two.member(f"u{i}")) for i in range(40_000))
    for cell in [("x", "y"), ("x", None), (None, "y"), (None, None)]:
        assert abs(joint[cell] / 40_000 - 0.25) < 0.01, joint


def test_overlapping_slices_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        LayerPlan.build("recs", 0.0, [(slice_bounds(0, 0.5), "a"), (slice_bounds(0.4, 1), "b")])


@given(unit=units, lo=st.integers(0, 100), hi=st.integers(0, 100))
def test_raising_the_holdout_only_adds_units_to_it(unit: str, lo: int, hi: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    if in_holdout("recs", unit, lo / 100):
        assert in_holdout("recs", unit, hi / 100)


@given(unit=units)
def test_holdout_does_not_change_which_slice_a_unit_is_in(unit: str) -> None:
    assert _plan(holdout=0.0).member(unit) == _plan(holdout=0.2).member(unit)


def test_holdout_keeps_its_share_out() -> None:
    plan = _plan(holdout=0.1)
    held = sum(plan.held_out(f"u{i}") for i in range(20_000))
    assert abs(held / 20_000 - 0.1) < 0.01


def test_empty_slice_is_refused() -> None:
    with pytest.raises(ValueError, match="holds no bucket"):
        slice_bounds(0.5, 0.5)
