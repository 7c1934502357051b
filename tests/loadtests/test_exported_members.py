"""The public API of loadtests is exactly what ``__all__`` names."""

from __future__ import annotations

import loadtests


def test_public_api() -> None:
    assert set(loadtests.__all__) == {
        "LoadResult",
        "Scenario",
        "UnitChoice",
        "run",
        "run_closed_loop",
        "run_open_loop",
        "to_json",
        "to_table",
    }
    for name in loadtests.__all__:
        assert getattr(loadtests, name) is not None
