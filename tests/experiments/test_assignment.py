"""The assignment hash of DESIGN.md: deterministic, proportional, stable under weight ramps."""

from __future__ import annotations

import math
import shutil
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.assignment import (
    BUCKETS,
    assign,
    bucket,
    bucket_bounds,
    python_bucket,
    variant_index,
)

UNITS = [f"user-{i}" for i in range(100_000)]


@given(st.text(max_size=40), st.text(max_size=80))
def test_bucket_is_deterministic_and_in_range(salt: str, unit_id: str) -> None:
    b = bucket(salt, unit_id)
    assert 0 <= b < BUCKETS
    assert b == bucket(salt, unit_id)


@given(st.text(max_size=40), st.text(max_size=80))
def test_the_compiled_hash_is_the_python_one(salt: str, unit_id: str) -> None:
    # Any text, lone surrogates included (both raise UnicodeEncodeError: no UTF-8 form).
    try:
        expected: int | type[Exception] = python_bucket(salt, unit_id)
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    try:
        got: int | type[Exception] = bucket(salt, unit_id)
    except UnicodeEncodeError:
        got = UnicodeEncodeError
    assert got == expected


def test_the_compiled_hash_is_built_wherever_it_can_be() -> None:
    # Optional at install (no compiler or no OpenSSL headers: the Python hash, ~6,000
    # instructions more per call); where both are, a build that broke silently must show.
    headers = Path(sysconfig.get_config_var("INCLUDEDIR") or "/usr/include") / "openssl/evp.h"
    if shutil.which("cc") is None or not (
        headers.exists() or Path("/usr/include/openssl/evp.h").exists()
    ):
        pytest.skip("no C compiler or no OpenSSL headers here")
    assert bucket is not python_bucket, "experiments/_bucket.c did not build: see pip's output"


@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=8).filter(
        lambda w: sum(w) > 0
    )
)
def test_bounds_follow_the_floor_formula_exactly(weights: list[int]) -> None:
    total = sum(weights)
    expected = [math.floor(BUCKETS * sum(weights[: i + 1]) / total) for i in range(len(weights))]
    assert list(bucket_bounds(weights)) == expected
    assert bucket_bounds(weights)[-1] == BUCKETS


def test_float_weights_do_not_suffer_rounding() -> None:
    # 0.1 + 0.2 != 0.3 in floats; exact rationals keep the boundary where the formula puts it.
    assert bucket_bounds([0.1, 0.2, 0.7]) == (1000, 3000, 10000)


@pytest.mark.parametrize(
    "weights",
    [[50, 50], [20, 30, 50], [90, 10], [1, 1, 1]],
    ids=["50-50", "20-30-50", "90-10", "thirds"],
)
def test_shares_over_100k_units_match_weights_within_five_sigma(weights: list[int]) -> None:
    keys = [f"v{i}" for i in range(len(weights))]
    bounds = bucket_bounds(weights)
    counts = Counter(keys[variant_index(bounds, bucket("exp-salt", u))] for u in UNITS)
    n = len(UNITS)
    for key, w in zip(keys, weights, strict=True):
        p = w / sum(weights)
        assert abs(counts[key] - n * p) < 5 * math.sqrt(n * p * (1 - p)), (key, counts[key], n * p)


def test_different_salts_give_independent_assignments() -> None:
    a = [assign("salt-a", u, ["c", "t"], [50, 50]) for u in UNITS[:20_000]]
    b = [assign("salt-b", u, ["c", "t"], [50, 50]) for u in UNITS[:20_000]]
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    assert abs(agree - 0.5) < 0.02


def test_ramping_treatment_only_moves_control_units_into_treatment() -> None:
    before = {u: assign("ramp", u, ["control", "treatment"], [90, 10]) for u in UNITS[:30_000]}
    after = {u: assign("ramp", u, ["control", "treatment"], [50, 50]) for u in UNITS[:30_000]}
    moved = [u for u in before if before[u] != after[u]]
    assert all(before[u] == "control" and after[u] == "treatment" for u in moved)
    # Exactly the 40% of buckets that changed hands move (within sampling noise).
    assert abs(len(moved) / len(before) - 0.40) < 0.015


def test_zero_weight_variant_gets_no_units() -> None:
    assert {assign("z", u, ["a", "b", "c"], [1, 0, 1]) for u in UNITS[:5000]} == {"a", "c"}


@pytest.mark.parametrize("weights", [[0, 0], [-1, 2]])
def test_invalid_weights_are_refused(weights: list[int]) -> None:
    with pytest.raises(ValueError):
        bucket_bounds(weights)
