"""Request bodies: unit choice per scenario, exclusions, limit, surface."""

from __future__ import annotations

import orjson
import pytest

from loadtests import Scenario, UnitChoice


def bodies(scenario: Scenario, n: int) -> list[dict[str, object]]:
    factory = scenario.bodies()
    return [orjson.loads(factory.body()) for _ in range(n)]


def test_bodies_follow_the_serving_contract() -> None:
    (body,) = bodies(Scenario(surface="cart_upsell", exclusions=5, limit=7, seed=1), 1)

    assert body["surface"] == "cart_upsell"
    assert body["limit"] == 7
    assert isinstance(body["unit_id"], str)
    assert len(body["exclude"]) == 5
    assert all(x.startswith("sku-") for x in body["exclude"])


def test_large_exclusion_lists_are_sent_whole() -> None:
    (body,) = bodies(Scenario(exclusions=2_000, catalog=10**6, seed=1), 1)

    assert len(body["exclude"]) == 2_000


def test_hot_units_stay_in_the_hot_set() -> None:
    units = {b["unit_id"] for b in bodies(Scenario(kind=UnitChoice.hot, hot_units=10, seed=1), 500)}

    assert units <= {f"u{i}" for i in range(10)}
    assert len(units) == 10


def test_cold_units_are_never_repeated_within_the_unit_space() -> None:
    scenario = Scenario(kind=UnitChoice.cold, units=1_000, start=100, seed=1)
    units = [b["unit_id"] for b in bodies(scenario, 900)]

    assert units[:3] == ["u100", "u101", "u102"]
    assert len(set(units)) == 900


def test_unknown_share_sends_that_share_of_units_without_lists() -> None:
    units = [b["unit_id"] for b in bodies(Scenario(unknown_share=0.3, seed=1), 2_000)]
    unknown = sum(u.startswith("unknown-") for u in units)

    assert 450 < unknown < 750


def test_the_same_seed_gives_the_same_bodies() -> None:
    assert bodies(Scenario(seed=7), 20) == bodies(Scenario(seed=7), 20)


@pytest.mark.parametrize(
    "bad",
    [{"unknown_share": 1.5}, {"units": 0}, {"limit": 0}, {"exclusions": -1}],
)
def test_invalid_scenarios_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Scenario(**bad)  # type: ignore[arg-type]
