"""The Spark partitioning rule (Spark itself runs outside the test suite)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch.spark import partition_count


@pytest.mark.parametrize(
    ("rows", "cores", "expected"),
    [
        (0, 8, 1),
        (10, 8, 8),
        (3, 8, 3),
        (1_000_000, 8, 24),
        (1_000_000, 2, 20),
        (10**10, 64, 20_000),
    ],
)
def test_partition_count_examples(rows: int, cores: int, expected: int) -> None:
    assert partition_count(rows, cores=cores) == expected


@given(st.integers(1, 10**9), st.integers(1, 512))
def test_partitions_bound_memory_and_fill_every_core(rows: int, cores: int) -> None:
    n = partition_count(rows, cores=cores)
    assert 1 <= n <= min(rows, 20_000)
    if n < 20_000 and n < rows:
        assert rows / n <= 50_000  # no task scores more than rows_per_partition rows
        assert n % cores == 0  # the last wave keeps every core busy
