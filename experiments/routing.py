"""Routing: which experiment, variant and model serve a unit on a surface.

``Router`` is compiled once per configuration snapshot (bucket bounds, layer slices, traffic
thresholds, targeting conditions and every possible ``Route`` precomputed), so that the request
path only hashes, compares and looks up. It is pure: no I/O, no clock; alias resolution happens
outside, on the ``ModelRef`` it returns.

The decision for ``(surface, unit_id, attributes)``, in order (docs/experiments.md):

1. forced: a unit on the allow-list of a running experiment gets that variant (``forced=True``);
2. layer: the unit's layer bucket picks the running experiment whose slice holds it, if any;
3. targeting: a unit whose attributes do not match the experiment's condition gets the default;
4. traffic: a unit whose traffic bucket is above the experiment's share gets the default;
5. holdout: a unit in the holdout of the layer that passed 2-4 gets the default, marked as that
   experiment's holdout (``holdout=True``, variant ``__holdout__``): it is logged, so the
   holdout can be measured, and is never part of an arm;
6. variant: the variant bucket picks the variant (DESIGN.md's contiguous ranges).

"The default" is the surface's default model, or the winner's model after ``stop --winner``;
outside an experiment (and its holdout) ``experiment`` is None and no exposure is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from experiments.arms import AliasArm, alias_arms
from experiments.assignment import bucket, variant_index
from experiments.errors import SurfaceNotFound
from experiments.layers import LayerPlan
from experiments.modelref import ModelRef
from experiments.schema import ConfigSet, Experiment, Surface
from experiments.source import ConfigSnapshot
from experiments.targeting import Condition
from experiments.traffic import share_threshold, traffic_bucket

_NO_ATTRIBUTES: Final[Mapping[str, object]] = {}


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one request.

    ``experiment`` is None when the unit is served the surface default (no running experiment,
    or the unit is not in it); then no exposure is logged. ``fallback_model`` is the model of the
    experiment's fallback variant, tried when the assigned model has no list for the unit.
    ``forced`` marks QA units from an allow-list (their exposures are excluded from analysis).
    ``reason`` says why: ``assigned``, ``forced``, ``no_experiment``, ``holdout``, ``not_in_layer``,
    ``not_targeted``, ``out_of_traffic``, or ``winner`` (the default is a stopped experiment's
    winner).
    """

    surface: Surface
    model: ModelRef
    experiment: str | None = None
    variant: str | None = None
    config_version: int = 0
    fallback_model: ModelRef | None = None
    forced: bool = False
    reason: str = "no_experiment"
    fallback_variant: str | None = None
    holdout: bool = False  # a held-out unit that would be in ``experiment``: logged, never an arm


HOLDOUT_VARIANT: Final = "__holdout__"  # the ``variant`` of holdout exposures (no key starts "_")


@dataclass(frozen=True, slots=True)
class Allocation:
    """A running experiment with the layer it allocates in (what its phase id covers)."""

    experiment: Experiment
    layer_salt: str
    layer_holdout: float


@dataclass(frozen=True, slots=True)
class _CompiledExperiment:
    key: str
    salt: str
    bounds: tuple[int, ...]
    routes: tuple[Route, ...]  # one per variant, in file order
    condition: Condition | None
    traffic_threshold: int
    holdout_route: Route  # served (and logged as a holdout exposure) to held-out units


@dataclass(frozen=True, slots=True)
class _SurfacePlan:
    default: Route
    layer: LayerPlan[_CompiledExperiment] | None
    forced: Mapping[str, Route]
    not_eligible: Mapping[str, Route]  # reason -> default route carrying that reason


class Router:
    """Routes requests for one configuration snapshot."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        config = snapshot.config
        self.surfaces: Mapping[str, Surface] = dict(config.surfaces)
        self._plans = {name: _plan(config, snapshot, s) for name, s in self.surfaces.items()}
        self.allocations: dict[str, Allocation] = {}
        for e in config.experiments.values():
            if e.status == "running" and e.surface in self.surfaces:
                salt, holdout = config.layer_salt_and_holdout(e)
                self.allocations[e.key] = Allocation(e, salt, holdout)

    def route(
        self, surface: str, unit_id: str, attributes: Mapping[str, object] | None = None
    ) -> Route:
        """The route of ``unit_id`` on ``surface``; SurfaceNotFound if the surface is unknown."""
        return self.assign(surface, unit_id, attributes)[0]

    def assign(
        self, surface: str, unit_id: str, attributes: Mapping[str, object] | None = None
    ) -> tuple[Route, int]:
        """The route of ``unit_id`` and its variant bucket (-1 outside any experiment).

        A held-out unit that would otherwise be in an experiment (its layer slice, targeting
        and traffic gate) gets that experiment's holdout route: the surface default, logged as
        a holdout exposure so that the holdout can be measured.
        """
        plan = self._plans.get(surface)
        if plan is None:
            raise SurfaceNotFound(surface, self.surfaces)
        if plan.layer is None:
            return plan.default, -1
        forced = plan.forced.get(unit_id)
        if forced is not None:
            return forced, -1
        held = plan.layer.held_out(unit_id)
        exp = plan.layer.member(unit_id)
        if exp is None:
            return plan.not_eligible["holdout" if held else "not_in_layer"], -1
        if exp.condition is not None and not exp.condition(attributes or _NO_ATTRIBUTES):
            return plan.not_eligible["holdout" if held else "not_targeted"], -1
        if (
            exp.traffic_threshold < 10_000
            and traffic_bucket(exp.salt, unit_id) >= exp.traffic_threshold
        ):
            return plan.not_eligible["holdout" if held else "out_of_traffic"], -1
        b = bucket(exp.salt, unit_id)
        if held:
            return exp.holdout_route, b
        return exp.routes[variant_index(exp.bounds, b)], b

    def alias_arms(self) -> list[AliasArm]:
        """The variants of running experiments that name their model through an alias."""
        return [arm for a in self.allocations.values() for arm in alias_arms(a.experiment)]

    def model_refs(self) -> set[ModelRef]:
        """Every model reference this snapshot can serve (to resolve aliases ahead of requests)."""
        refs: set[ModelRef] = set()
        for plan in self._plans.values():
            refs.add(plan.default.model)
            for exp in plan.layer.members if plan.layer else ():
                for r in exp.routes:
                    refs.add(r.model)
                    if r.fallback_model is not None:
                        refs.add(r.fallback_model)
        return refs

    def running(self) -> dict[str, list[str]]:
        """Keys of the running experiments of each surface (for listing what a replica serves)."""
        return {
            name: [e.key for e in plan.layer.members] if plan.layer else []
            for name, plan in self._plans.items()
        }


def _plan(config: ConfigSet, snapshot: ConfigSnapshot, surface: Surface) -> _SurfacePlan:
    winner = config.winner_on(surface.name)
    if winner is not None and winner.winner is not None:
        default = Route(surface, winner.variant(winner.winner).model_ref, reason="winner")
    else:
        default = Route(surface, ModelRef.parse(surface.default_model))
    running = config.running_on(surface.name)
    if not running:
        return _SurfacePlan(default, None, {}, {})
    # checks.py guarantees one layer per surface; the first experiment names it.
    salt, holdout = config.layer_salt_and_holdout(running[0])
    compiled = [
        (e.layer_slice, _compile(e, snapshot.version_of(e.key), surface, default)) for e in running
    ]
    layer = LayerPlan.build(salt, holdout, compiled)
    forced: dict[str, Route] = {}
    for e, (_, c) in zip(running, compiled, strict=True):
        for unit, variant in e.forced.items():
            r = c.routes[e.variant_keys.index(variant)]
            forced.setdefault(
                unit,
                Route(
                    surface,
                    r.model,
                    r.experiment,
                    r.variant,
                    r.config_version,
                    r.fallback_model,
                    True,
                    "forced",
                    r.fallback_variant,
                ),
            )
    reasons = ("holdout", "not_in_layer", "not_targeted", "out_of_traffic")
    not_eligible = {
        r: Route(surface, default.model, reason=r if default.reason != "winner" else "winner")
        for r in reasons
    }
    return _SurfacePlan(default, layer, forced, not_eligible)


def _compile(
    e: Experiment, config_version: int, surface: Surface, default: Route
) -> _CompiledExperiment:
    fallback_key = e.fallback or e.variant_keys[0]
    fallback = e.variant(fallback_key).model_ref
    routes = tuple(
        Route(
            surface,
            v.model_ref,
            e.key,
            v.key,
            config_version,
            fallback,
            False,
            "assigned",
            fallback_key,
        )
        for v in e.variants
    )
    holdout = Route(
        surface,
        default.model,
        e.key,
        HOLDOUT_VARIANT,
        config_version,
        reason="holdout",
        holdout=True,
    )
    return _CompiledExperiment(
        e.key,
        e.salt or e.key,
        e.bounds,
        routes,
        e.condition,
        share_threshold(e.traffic),
        holdout,
    )
