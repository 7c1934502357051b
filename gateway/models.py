"""Resolving model references to versions, and holding each version's default list in memory.

Aliases (``models:/NAME@ALIAS``) and default lists are read from Postgres at start-up and
refreshed in the background; the request path only looks them up in dicts. When Postgres is
down during a refresh, the last known mapping stays in force.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from experiments import ModelRef, ModelVersion
from gateway.results import Items, PostgresResultsStore


@dataclass(frozen=True, slots=True)
class ModelDirectory:
    """An immutable view: alias map and default lists. Replaced whole on refresh."""

    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    defaults: dict[ModelVersion, Items] = field(default_factory=dict)

    def resolve(self, ref: ModelRef) -> ModelVersion | None:
        """The version a reference points at now, or None for an unknown alias."""
        if ref.version is not None:
            return ModelVersion(ref.name, ref.version)
        version = self.aliases.get((ref.name, ref.alias or ""))
        return None if version is None else ModelVersion(ref.name, version)

    def default_list(self, mv: ModelVersion | None) -> Items | None:
        """The version's default list, or None if it has none (or is not loaded)."""
        if mv is None:
            return None
        return self.defaults.get(mv) or None


async def load_directory(store: PostgresResultsStore, refs: Iterable[ModelRef]) -> ModelDirectory:
    """Read aliases, then the default lists of every version ``refs`` resolve to."""
    aliases = await store.aliases()
    partial = ModelDirectory(aliases)
    versions = {mv for mv in (partial.resolve(r) for r in refs) if mv is not None}
    return ModelDirectory(aliases, await store.default_lists(versions))


def save_directory_file(path: Path, directory: ModelDirectory) -> None:
    """Keep ``directory`` on disk (atomically) for a start while Postgres is down."""
    data = {
        "aliases": [[m, a, v] for (m, a), v in sorted(directory.aliases.items())],
        "defaults": [[mv.name, mv.version, items] for mv, items in directory.defaults.items()],
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
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
