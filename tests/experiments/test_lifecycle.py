"""Lifecycle transitions and reshuffle detection (pure rules of experiments/lifecycle.py)."""

from __future__ import annotations

import pytest

from experiments.errors import LifecycleError
from experiments.lifecycle import TRANSITIONS, next_status, reshuffling_changes
from tests.experiments.helpers import experiment

STATUSES = ["draft", "running", "paused", "stopped", "archived"]
ACTIONS = ["start", "pause", "resume", "stop", "archive"]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_only_listed_transitions_are_allowed(status: str, action: str) -> None:
    if (status, action) in TRANSITIONS:
        assert next_status("e", status, action) == TRANSITIONS[(status, action)]  # type: ignore[arg-type]
    else:
        with pytest.raises(LifecycleError, match=f"is {status}: cannot {action}"):
            next_status("e", status, action)  # type: ignore[arg-type]


def test_the_documented_path() -> None:
    s = "draft"
    for action, expected in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("stop", "stopped"),
        ("archive", "archived"),
    ]:
        s = next_status("e", s, action)  # type: ignore[arg-type]
        assert s == expected


def test_ramps_are_not_reshuffles() -> None:
    old = experiment(status="running")
    new = experiment(
        status="running",
        traffic=0.3,
        variants=[
            {"key": "control", "weight": 90, "model": "models:/home_recs/1"},
            {"key": "treatment", "weight": 10, "model": "models:/home_recs/8"},
            {"key": "t2", "weight": 0, "model": "models:/home_recs/9"},
        ],
    )
    assert reshuffling_changes(old, new) == []


def test_salt_removal_reorder_insert_and_layer_are_reshuffles() -> None:
    old = experiment(status="running")
    v = old.model_dump()["variants"]
    assert "salt changes" in reshuffling_changes(old, experiment(salt="new"))[0]
    assert (
        "removed" in reshuffling_changes(old, experiment(variants=[v[0], {**v[1], "key": "t2"}]))[0]
    )
    assert "reordered" in reshuffling_changes(old, experiment(variants=[v[1], v[0]]))[0]
    assert (
        "inserted before"
        in reshuffling_changes(old, experiment(variants=[{**v[0], "key": "new"}, *v]))[0]
    )
    assert "layer changes" in reshuffling_changes(old, experiment(layer="recs"))[0]
