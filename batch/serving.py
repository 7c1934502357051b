"""What serves traffic now: the model references of surfaces and running experiments.

Read from the experiment store (Postgres) and, when the gateway is configured from a folder,
from its YAML files, so ``drop`` and the retention rule never remove a version in use.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from experiments import ConfigSet, ModelRef, load_config_dir
from experiments.store import PostgresExperimentStore


def config_refs(config: ConfigSet, origin: str) -> list[tuple[str, ModelRef]]:
    """``(label, ref)`` of every surface default and every variant of a running experiment
    (and the winner of a stopped one, which serves its surface)."""
    refs: list[tuple[str, ModelRef]] = []
    for s in config.surfaces.values():
        refs.append((f"surface '{s.name}' ({origin})", ModelRef.parse(s.default_model)))
    for e in config.experiments.values():
        for v in e.variants:
            if e.status == "running" or (e.status == "stopped" and e.winner == v.key):
                what = "running experiment" if e.status == "running" else "winner of experiment"
                refs.append((f"{what} '{e.key}' variant '{v.key}' ({origin})", v.model_ref))
    return refs


async def serving_refs(
    pool: asyncpg.Pool, experiments_dir: Path | None = None
) -> list[tuple[str, ModelRef]]:
    """References that serve traffic, from the experiment store and the YAML folder."""
    snapshot = await PostgresExperimentStore(pool).snapshot()
    refs = config_refs(snapshot.config, "experiment store")
    if experiments_dir is not None and experiments_dir.is_dir():
        refs += config_refs(load_config_dir(experiments_dir), f"files in {experiments_dir}")
    return refs
