"""Routing: which experiment, variant and model serve a unit on a surface.

``Router`` is compiled once per configuration snapshot (bucket bounds precomputed, model
references parsed), so that the request path only hashes and looks up. It is pure: no I/O,
no clock; alias resolution happens outside, on the ``ModelRef`` it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from experiments.assignment import bucket, variant_index
from experiments.config import Experiment, Surface
from experiments.modelref import ModelRef
from experiments.source import ConfigSnapshot


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one request.

    ``experiment`` is None when the unit is served the surface default (no running experiment,
    or the unit is not in it); then no exposure is logged. ``fallback_model`` is the model of the
    experiment's fallback variant, tried when the assigned model has no list for the unit.
    """

    surface: Surface
    model: ModelRef
    experiment: str | None = None
    variant: str | None = None
    config_version: int = 0
    fallback_model: ModelRef | None = None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class _CompiledExperiment:
    key: str
    salt: str
    bounds: tuple[int, ...]
    variants: tuple[str, ...]
    models: tuple[ModelRef, ...]
    fallback_model: ModelRef
    config_version: int


class Router:
    """Routes requests for one configuration snapshot."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        self.surfaces: Mapping[str, Surface] = dict(snapshot.config.surfaces)
        self._defaults = {name: Route(s, ModelRef.parse(s.default_model)) for name, s in self.surfaces.items()}
        self._running: dict[str, _CompiledExperiment] = {}
        for name in self.surfaces:
            for e in snapshot.config.running_on(name):
                self._running[name] = _compile(e, snapshot.version_of(e.key))

    def route(self, surface: str, unit_id: str, attributes: Mapping[str, object] | None = None) -> Route:
        """The route of ``unit_id`` on ``surface``; KeyError if the surface is unknown."""
        default = self._defaults[surface]
        exp = self._running.get(surface)
        if exp is None:
            return default
        i = variant_index(exp.bounds, bucket(exp.salt, unit_id))
        return Route(
            default.surface,
            exp.models[i],
            exp.key,
            exp.variants[i],
            exp.config_version,
            exp.fallback_model,
        )

    def model_refs(self) -> set[ModelRef]:
        """Every model reference this snapshot can serve (to resolve aliases ahead of requests)."""
        refs = {r.model for r in self._defaults.values()}
        for e in self._running.values():
            refs.update(e.models)
        return refs


def _compile(e: Experiment, config_version: int) -> _CompiledExperiment:
    models = tuple(v.model_ref for v in e.variants)
    fallback = e.variant(e.fallback or e.variant_keys[0]).model_ref
    return _CompiledExperiment(e.key, e.salt or e.key, e.bounds, e.variant_keys, models, fallback, config_version)
