"""Resolving model references to versions, and holding each version's default list in memory.

Aliases (``models:/NAME@ALIAS``), the pins of running experiments' alias arms
(experiments/store/pins.py) and default lists are read from Postgres at start-up and refreshed in the
background; the request path only looks them up in dicts. When Postgres is down during a
refresh, the last known mapping stays in force.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from experiments import AliasArm, ModelRef, ModelVersion
from experiments.routing import Route, Router
from gateway.lookup import Items


class ModelCatalog(Protocol):
    """Where aliases, arm pins and default lists are read (gateway/backends/postgres.py).

    Each method raises ResultsStoreUnavailable when the catalog cannot be read.
    """

    async def aliases(self) -> dict[tuple[str, str], str]:
        """Every ``(model, alias) -> version``."""
        ...

    async def pin_arms(
        self, arms: Iterable[AliasArm], aliases: Mapping[tuple[str, str], str]
    ) -> dict[tuple[str, str], str]:
        """Pin alias arms not pinned yet; ``(experiment, variant) -> version``."""
        ...

    async def default_lists(self, versions: Iterable[ModelVersion]) -> dict[ModelVersion, Items]:
        """Default lists of active ``versions`` (missing or inactive versions are absent)."""
        ...


@dataclass(frozen=True, slots=True)
class ModelDirectory:
    """An immutable view: alias map, arm pins and default lists. Replaced whole on refresh."""

    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    defaults: dict[ModelVersion, Items] = field(default_factory=dict)
    pins: dict[tuple[str, str], str] = field(default_factory=dict)  # (experiment, variant) -> v
    # Each version's ModelVersion, made once: the request path gets the same object every time
    # (no frozen-dataclass construction per request; the exposure encoder caches by identity).
    _versions: dict[tuple[str, str], ModelVersion] = field(
        default_factory=dict, compare=False, repr=False
    )

    def _version(self, name: str, version: str) -> ModelVersion:
        mv = self._versions.get((name, version))
        if mv is None:
            mv = self._versions[name, version] = ModelVersion(name, version)
        return mv

    def resolve(self, ref: ModelRef) -> ModelVersion | None:
        """The version a reference points at now, or None for an unknown alias."""
        if ref.version is not None:
            return self._version(ref.name, ref.version)
        version = self.aliases.get((ref.name, ref.alias or ""))
        return None if version is None else self._version(ref.name, version)

    def resolve_arm(
        self, ref: ModelRef, experiment: str | None, variant: str | None
    ) -> ModelVersion | None:
        """The version an experiment arm serves: its pin when ``ref`` is an alias and pinned."""
        if ref.alias is not None and experiment is not None:
            pinned = self.pins.get((experiment, variant or ""))
            if pinned is not None:
                return self._version(ref.name, pinned)
        return self.resolve(ref)

    def resolve_route(self, route: Route) -> ModelVersion | None:
        """The version ``route`` serves (holdout routes serve the surface default, unpinned)."""
        if route.holdout:
            return self.resolve(route.model)
        return self.resolve_arm(route.model, route.experiment, route.variant)

    def default_list(self, mv: ModelVersion | None) -> Items | None:
        """The version's default list, or None if it has none (or is not loaded)."""
        if mv is None:
            return None
        return self.defaults.get(mv) or None


async def load_directory(store: ModelCatalog, router: Router) -> ModelDirectory:
    """Read aliases, pin the running experiments' alias arms not pinned yet, then read the
    default lists of every version the router's references and pins resolve to."""
    aliases = await store.aliases()
    arms = router.alias_arms()
    pins = await store.pin_arms(arms, aliases) if arms else {}
    partial = ModelDirectory(aliases, pins=pins)
    versions = {mv for mv in (partial.resolve(r) for r in router.model_refs()) if mv is not None}
    versions |= {
        mv for a in arms if (mv := partial.resolve_arm(a.ref, a.experiment, a.variant)) is not None
    }
    return ModelDirectory(aliases, await store.default_lists(versions), pins)


def save_directory_file(path: Path, directory: ModelDirectory) -> None:
    """Keep ``directory`` on disk (atomically) for a start while Postgres is down."""
    data = {
        "aliases": [[m, a, v] for (m, a), v in sorted(directory.aliases.items())],
        "defaults": [[mv.name, mv.version, items] for mv, items in directory.defaults.items()],
        "pins": [[e, v, version] for (e, v), version in sorted(directory.pins.items())],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def read_directory_file(path: Path) -> ModelDirectory | None:
    """The directory kept on disk, or None if there is none (or it is unreadable)."""
    try:
        data = orjson.loads(path.read_bytes())
        return ModelDirectory(
            {(m, a): v for m, a, v in data["aliases"]},
            {ModelVersion(m, v): items for m, v, items in data["defaults"]},
            {(e, v): version for e, v, version in data.get("pins", [])},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
