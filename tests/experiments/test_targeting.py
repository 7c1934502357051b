"""The targeting language: parsing, semantics, located errors (more cases in cases.json)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.targeting import TargetingError, compile_condition

values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)
)
attributes = st.dictionaries(
    st.sampled_from(["country", "age", "platform", "x"]), values, max_size=4
)

EXPRESSIONS = [
    "country == 'JP'",
    "age >= 18 and age < 65",
    "platform in ['ios', 'android'] or not (country != 'US')",
    "x not in [1, 2, 'a', true]",
    "not not (age > -3.5e2)",
]


@given(attrs=attributes)
def test_conditions_never_raise_on_any_attributes(attrs: dict[str, object]) -> None:
    for expr in EXPRESSIONS:
        assert compile_condition(expr)(attrs) in (True, False)


@given(attrs=attributes)
def test_not_negates_the_whole_comparison(attrs: dict[str, object]) -> None:
    cond, neg = compile_condition("country == 'JP'"), compile_condition("not (country == 'JP')")
    assert cond(attrs) is not neg(attrs)


@given(attrs=attributes)
def test_and_or_follow_boolean_logic(attrs: dict[str, object]) -> None:
    a, b = compile_condition("age >= 18"), compile_condition("country == 'JP'")
    assert compile_condition("age >= 18 and country == 'JP'")(attrs) is (a(attrs) and b(attrs))
    assert compile_condition("age >= 18 or country == 'JP'")(attrs) is (a(attrs) or b(attrs))


@given(text=st.text(max_size=40))
def test_any_text_either_compiles_or_raises_a_located_error(text: str) -> None:
    try:
        compile_condition(text)
    except TargetingError as exc:
        assert 1 <= exc.column <= max(len(text), 1) + 1
        assert str(exc).startswith(f"column {exc.column}: ")


def test_and_binds_tighter_than_or() -> None:
    cond = compile_condition("a == 1 or b == 2 and c == 3")
    assert cond({"a": 1})
    assert not cond({"b": 2})
    assert cond({"b": 2, "c": 3})


def test_nan_never_matches_numeric_comparisons() -> None:
    assert not compile_condition("x > 0")({"x": float("nan")})


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("country = 'JP'", "unexpected character '='"),
        ("age > 'x'", "'>' compares numbers"),
        ("country in 'JP'", "expected '['"),
        ("a == 1 b == 2", "expected 'and', 'or' or the end"),
        ("   ", "is empty"),
    ],
)
def test_errors_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(TargetingError, match=re.escape(message)):
        compile_condition(expr)
