"""Where the live experiment configuration comes from, behind one small interface.

The gateway holds a ``ConfigSnapshot`` and swaps it whole when its ``ConfigSource`` yields a
new one. ``YamlDirectorySource`` reads a folder of YAML files (``ABGATE_EXPERIMENTS_DIR``); the
versioned Postgres store implements the same Protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from experiments.config import ConfigSet, load_config_dir


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """One consistent view of every surface and experiment, as a replica serves it."""

    config: ConfigSet
    # config_version per experiment key, carried by exposure records
    versions: Mapping[str, int] = field(default_factory=dict)
    # Where it came from: "dir:PATH", "postgres:SCHEMA" or "disk-cache:PATH" (stale, for /readyz)
    origin: str = ""
    # The store's configuration revision (0 for files): grows with every stored change
    revision: int = 0

    def version_of(self, experiment_key: str) -> int:
        """The configuration version of an experiment (1 for files without a store)."""
        return self.versions.get(experiment_key, 1)

    @property
    def from_disk_cache(self) -> bool:
        """Whether this is a last-known-good copy read from disk (the store was unreachable)."""
        return self.origin.startswith("disk-cache:")


class ConfigSource(Protocol):
    """A provider of configuration snapshots."""

    async def load(self) -> ConfigSnapshot:
        """The current configuration; raises ``ConfigError`` if it is invalid."""
        ...

    def changes(self) -> AsyncIterator[ConfigSnapshot]:
        """New valid snapshots as they appear (may never yield)."""
        ...

    async def aclose(self) -> None:
        """Release connections and tasks."""
        ...


class YamlDirectorySource:
    """Configuration from a folder of YAML files, read once at start-up.

    Files are validated together; an invalid folder raises ``ConfigError`` naming every file,
    line and field, so a gateway never starts half-configured.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    async def load(self) -> ConfigSnapshot:
        """Read and validate every file of the folder."""
        config = await asyncio.to_thread(load_config_dir, self.directory)
        return ConfigSnapshot(config, {}, f"dir:{self.directory}")

    async def changes(self) -> AsyncIterator[ConfigSnapshot]:
        """A folder source does not reload (the Postgres store does)."""
        return
        yield  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        """Nothing to release."""
