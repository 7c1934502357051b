"""The Router: forced, holdout, layers, targeting, traffic, variant, winner."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import SurfaceNotFound, VariantNotFound, alias_arms
from experiments.assignment import assign, bucket
from experiments.modelref import ModelRef
from experiments.routing import HOLDOUT_VARIANT, Router
from experiments.source import ConfigSnapshot
from experiments.traffic import in_traffic
from tests.experiments.helpers import SURFACES, config, experiment, snapshot

units = st.text(min_size=1, max_size=24)


def test_surface_without_running_experiment_serves_its_default() -> None:
    r = Router(snapshot(experiment(status="draft"))).route("home_top", "u1")
    assert (
        r.experiment is None
        and r.model == ModelRef("home_recs", "1")
        and r.reason == "no_experiment"
    )


@given(unit=units)
def test_full_traffic_experiment_assigns_like_design(unit: str) -> None:
    router = Router(snapshot(experiment(status="running"), versions={"exp": 4}))
    r = router.route("home_top", unit)
    assert r.variant == assign("exp", unit, ["control", "treatment"], [50, 50])
    assert r.experiment == "exp" and r.config_version == 4 and not r.forced
    assert r.fallback_model == ModelRef("home_recs", "1")


@given(unit=units)
def test_raising_traffic_keeps_routed_units_in_the_same_variant(unit: str) -> None:
    low = Router(snapshot(experiment(status="running", traffic=0.2))).route("home_top", unit)
    high = Router(snapshot(experiment(status="running", traffic=0.5))).route("home_top", unit)
    assert (low.experiment is not None) == in_traffic("exp", unit, 0.2)
    if low.experiment is not None:
        assert high.variant == low.variant
    else:
        assert low.reason == "out_of_traffic" and low.model == ModelRef("home_recs", "1")


def test_targeting_sends_non_matching_units_to_the_default() -> None:
    router = Router(snapshot(experiment(status="running", targeting="country in ['JP']")))
    assert router.route("home_top", "u1", {"country": "JP"}).experiment == "exp"
    miss = router.route("home_top", "u1", {"country": "US"})
    assert miss.experiment is None and miss.reason == "not_targeted"
    assert router.route("home_top", "u1").reason == "not_targeted"


def test_forced_units_get_their_variant_whatever_the_gates() -> None:
    exp = experiment(
        status="running", traffic=0.0, targeting="country == 'JP'", forced={"qa-1": "treatment"}
    )
    r = Router(snapshot(exp, versions={"exp": 2})).route("home_top", "qa-1", {})
    assert (r.experiment, r.variant, r.forced, r.reason, r.config_version) == (
        "exp",
        "treatment",
        True,
        "forced",
        2,
    )
    assert r.model == ModelRef("home_recs", "7")


def test_paused_experiment_forces_nothing() -> None:
    exp = experiment(status="paused", forced={"qa-1": "treatment"})
    assert Router(snapshot(exp)).route("home_top", "qa-1").experiment is None


def test_layer_splits_units_between_mutually_exclusive_experiments() -> None:
    a = experiment("a", status="running", layer="recs", layer_range=[0, 0.5])
    b = experiment("b", status="running", layer="recs", layer_range=[0.5, 1])
    router = Router(snapshot(a, b))
    counts = Counter(router.route("home_top", f"u{i}").experiment for i in range(10_000))
    assert set(counts) == {"a", "b"}
    assert abs(counts["a"] - 5000) < 250


def test_a_layer_is_exclusive_across_surfaces() -> None:
    a = experiment("a", status="running", layer="recs", layer_range=[0, 0.5])
    c = experiment("c", surface="cart", status="running", layer="recs", layer_range=[0.5, 1])
    router = Router(snapshot(a, c))
    for i in range(2000):
        in_a = router.route("home_top", f"u{i}").experiment is not None
        in_c = router.route("cart", f"u{i}").experiment is not None
        assert in_a != in_c


def test_surface_holdout_keeps_units_out() -> None:
    surfaces = SURFACES.replace("holdout: 0.0}", "holdout: 0.25}", 1)

    cs = config(experiment("k", surface="cart", status="running"), surfaces=surfaces)
    router = Router(ConfigSnapshot(cs))
    reasons = Counter(router.route("cart", f"u{i}").reason for i in range(10_000))
    assert abs(reasons["holdout"] - 2500) < 200
    assert reasons["holdout"] + reasons["assigned"] == 10_000


def test_held_out_units_are_marked_as_the_experiments_holdout_and_served_the_default() -> None:
    surfaces = SURFACES.replace("holdout: 0.0}", "holdout: 0.25}", 1)
    exp = experiment("k", surface="cart", status="running", traffic=0.5)
    router = Router(ConfigSnapshot(config(exp, surfaces=surfaces)))
    held = [router.assign("cart", f"u{i}") for i in range(10_000)]
    holdout = [(r, b) for r, b in held if r.holdout]
    # Held out AND inside the traffic gate: about 25% x 50%; the rest of the held out are
    # outside the experiment anyway and log nothing.
    assert abs(len(holdout) - 1250) < 150
    for r, b in holdout:
        assert (r.experiment, r.variant, r.reason) == ("k", HOLDOUT_VARIANT, "holdout")
        assert r.model == ModelRef.parse("models:/cart_recs/1")  # the surface default
        assert 0 <= b < 10_000
    # Units not held out are assigned exactly as before, with their variant bucket.
    for i, (r, b) in enumerate(held):
        if r.reason == "assigned":
            assert b == bucket("k", f"u{i}")
            assert r.variant == assign("k", f"u{i}", ["control", "treatment"], [50, 50])


def test_stopped_winner_serves_everyone_without_exposures() -> None:
    exp = experiment(status="stopped", winner="treatment")
    router = Router(snapshot(exp))
    for i in range(100):
        r = router.route("home_top", f"u{i}")
        assert (
            r.experiment is None and r.model == ModelRef("home_recs", "7") and r.reason == "winner"
        )


def test_model_refs_cover_every_servable_model() -> None:
    router = Router(snapshot(experiment(status="running")))
    assert router.model_refs() == {
        ModelRef("home_recs", "1"),
        ModelRef("home_recs", "7"),
        ModelRef("cart_recs", "1"),
    }
    assert router.running() == {"home_top": ["exp"], "cart": []}


def test_an_unknown_surface_is_a_named_error_listing_the_declared_ones() -> None:
    router = Router(snapshot(experiment(status="running")))
    with pytest.raises(
        SurfaceNotFound, match=r"surface 'nope' is not declared \(surfaces: .*home_top"
    ):
        router.route("nope", "u1")


def test_an_unknown_variant_is_a_named_error_listing_the_variants() -> None:
    with pytest.raises(
        VariantNotFound, match=r"has no variant 'nope' \(variants: control, treatment\)"
    ):
        alias_arms(experiment(status="running"), "nope")
