"""Serving a recommendation: route the unit, look its list up, fall back, filter, log the exposure.

``Gateway`` holds the serving state (router + model directory, swapped together as one
``ServingState`` so a request sees one consistent snapshot), the lookup and the model catalog
built at start-up, and the background tasks that refresh the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from experiments import ConfigError, ModelRef, ModelVersion, SurfaceNotFound
from experiments.allocation import Phase, phase_of
from experiments.routing import Route, Router
from experiments.source import ConfigSource
from gateway.errors import (
    BackendUnavailable,
    BadRequest,
    LoggingUnavailable,
    NoAnswer,
    UnknownSurface,
)
from gateway.exposure_json import ExposureEncoder
from gateway.log_writer import LogFanOut
from gateway.lookup import Items, TieredLookup
from gateway.model_directory import (
    ModelCatalog,
    ModelDirectory,
    load_directory,
    save_directory_file,
)
from gateway.parsing import RecommendationRequest

if TYPE_CHECKING:
    from gateway.metrics import Metrics

log = logging.getLogger("abgate.gateway")


@dataclass(frozen=True, slots=True)
class ServingState:
    """What one request routes with: swapped whole on a config or alias change.

    ``phases`` holds each running experiment's allocation phase (experiments/allocation.py),
    computed here because the versions its arms serve (pins, aliases) are part of it.
    """

    router: Router
    directory: ModelDirectory
    phases: dict[str, Phase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.phases:
            object.__setattr__(self, "phases", serving_phases(self.router, self.directory))


def serving_phases(router: Router, directory: ModelDirectory) -> dict[str, Phase]:
    """The phase of every running experiment, with the versions its arms serve now."""
    out: dict[str, Phase] = {}
    for key, a in router.allocations.items():
        versions = []
        for v in a.experiment.variants:
            mv = directory.resolve_arm(v.model_ref, key, v.key)
            versions.append(mv.version if mv is not None else None)
        out[key] = phase_of(a.experiment, a.layer_salt, a.layer_holdout, versions)
    return out


class Answer(NamedTuple):
    """The outcome of a recommendation request, before it is encoded."""

    route: Route
    model: ModelVersion
    items: Items
    source: str
    bucket: int = -1
    phase: Phase | None = None  # of the state the unit was routed with (not the one at logging)


class Gateway:
    """Serving state, lookup, model catalog and background refreshers of one app."""

    def __init__(
        self,
        state: ServingState,
        results: TieredLookup,
        catalog: ModelCatalog,
        logger: LogFanOut,
        metrics: Metrics,
        *,
        directory_file: Path | None = None,
    ) -> None:
        self.state = state
        self.results = results
        self.catalog = catalog
        self.logger = logger
        self.metrics = metrics
        self.directory_file = directory_file
        self.exposure_json = ExposureEncoder(metrics.exposure_counts, logger.admit)
        # log_exposure(answer, unit_id, request_id, attributes): queue the exposure of an
        # answer given inside an experiment (or its holdout); nothing for other answers. Its
        # record is admitted, never refused: it was answered while the log was accepting
        # (checked in answer()).
        self.log_exposure = self.exposure_json.log
        if not self.exposure_json.native:
            log.warning(
                "the compiled exposure encoder is not built (no C compiler at install): "
                "exposures are encoded in Python, at several times the CPU per request"
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def answer(self, req: RecommendationRequest) -> Answer:
        """Route the unit, read its list (or a fallback), drop exclusions, back-fill to the limit."""
        state = self.state
        try:
            route, unit_bucket = state.router.assign(req.surface, req.unit_id, req.attributes)
        except SurfaceNotFound as exc:
            raise UnknownSurface(str(exc)) from None
        if route.experiment is not None and not self.logger.accepting:
            # ABGATE_SPOOL_FULL=refuse: no experiment answer that could not be logged
            self.metrics.log_refused.inc()
            raise LoggingUnavailable(
                "the exposure log is full; experiment traffic is refused until it drains"
            )
        surface = route.surface
        limit = req.limit if req.limit is not None else surface.default_limit
        if limit > surface.max_limit:
            raise BadRequest(
                f"'limit' must be at most {surface.max_limit} on surface '{surface.name}'",
                field="limit",
            )
        directory = state.directory
        mv = directory.resolve_route(route)
        items: Items | None = None
        source = "none"
        if mv is not None:
            found = await self.results.lookup(mv, req.unit_id)
            items, source = found.items, found.source
        served = mv
        if items is None:
            served, items = self._fallback(route, directory, mv)
            source = "fallback"
        if items is None or served is None:
            raise NoAnswer(
                f"no list for unit '{req.unit_id}' and no default list for {route.model} on '{surface.name}'"
            )
        phase = state.phases.get(route.experiment) if route.experiment is not None else None
        return Answer(
            route, served, filter_items(items, req.exclude, limit), source, unit_bucket, phase
        )

    def _fallback(
        self, route: Route, directory: ModelDirectory, mv: ModelVersion | None
    ) -> tuple[ModelVersion | None, Items | None]:
        """The first default list of: the assigned version, the fallback variant's, the surface's."""
        candidates = [mv]
        if route.fallback_model is not None:
            candidates.append(
                directory.resolve_arm(
                    route.fallback_model, route.experiment, route.fallback_variant
                )
            )
        candidates.append(directory.resolve(ModelRef.parse(route.surface.default_model)))
        for candidate in candidates:
            items = directory.default_list(candidate)
            if items is not None:
                return candidate, items
        return None, None

    # --- background refresh --------------------------------------------------------------------

    def start(self, source: ConfigSource, alias_refresh: float) -> None:
        """Start the owned background tasks: alias/default refresh and config reload."""
        self._tasks.append(
            asyncio.create_task(self._refresh_models(alias_refresh), name="abgate-model-refresh")
        )
        self._tasks.append(
            asyncio.create_task(self._follow_config(source), name="abgate-config-reload")
        )

    async def aclose(self) -> None:
        """Cancel the background tasks and let pending cache fills finish."""
        await self.results.drain()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()

    async def refresh_models(self) -> None:
        """Re-read aliases and default lists now (keeps the old ones if Postgres is down)."""
        state = self.state
        directory = await load_directory(self.catalog, state.router)
        if directory != state.directory:
            # Compare-and-swap: a config reload may have replaced the state meanwhile.
            if self.state is state:
                self.state = ServingState(state.router, directory)
            if self.directory_file is not None:
                await asyncio.to_thread(save_directory_file, self.directory_file, directory)

    async def _refresh_models(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh_models()
            except (BackendUnavailable, OSError) as exc:  # OSError: the disk copy failed
                log.warning(
                    "model alias refresh failed; keeping the last known", extra={"error": str(exc)}
                )

    async def _follow_config(self, source: ConfigSource) -> None:
        async for snapshot in source.changes():
            try:
                router = Router(snapshot)
            except (ConfigError, ValueError) as exc:
                log.error(
                    "new configuration refused; serving the previous one", extra={"error": str(exc)}
                )
                continue
            try:
                directory = await load_directory(self.catalog, router)
            except BackendUnavailable as exc:
                # The source will not yield this revision again: apply it with the aliases and
                # default lists we have; the model refresh completes the directory later.
                log.warning(
                    "configuration applied with the last known models", extra={"error": str(exc)}
                )
                directory = self.state.directory
            self.state = ServingState(router, directory)
            log.info("configuration reloaded", extra={"origin": snapshot.origin})


def filter_items(items: Items, exclude: frozenset[str], limit: int) -> Items:
    """The first ``limit`` items whose id is not excluded, in stored order (back-filled)."""
    if not exclude:
        return items[:limit]
    out: Items = []
    for it in items:
        if it["id"] not in exclude:
            out.append(it)
            if len(out) == limit:
                break
    return out
