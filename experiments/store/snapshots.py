"""Building ``ConfigSnapshot`` objects from the store's rows, and keeping one on local disk.

A snapshot is built from the current version of every surface, layer and (not archived)
experiment, read in one repeatable-read transaction, and validated exactly like a folder of
files (schema, then experiments/checks.py). An invalid store raises ``ConfigError`` and the
caller keeps serving what it has.

The disk cache is one JSON file holding the same rows; a replica that starts while Postgres is
unreachable rebuilds its snapshot from it (``origin = "disk-cache:PATH"``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from experiments.checks import check_references
from experiments.errors import ConfigError, ConfigIssue
from experiments.schema import ConfigSet, Experiment, Layer, Surface
from experiments.source import ConfigSnapshot

CACHE_FORMAT = 1


class Queryable(Protocol):
    """The part of an asyncpg connection or pool used to read the store."""

    async def fetch(self, query: str, *args: object) -> list[Any]: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...


@dataclass(frozen=True, slots=True)
class HeadRow:
    """The current version of one stored object."""

    kind: str
    name: str
    version: int
    body: dict[str, Any]


HEADS_SQL = """
SELECT v.kind, v.name, v.version, v.body::text AS body
FROM config_heads h JOIN config_versions v USING (kind, name, version)
ORDER BY v.kind, v.name
"""


async def read_heads(conn: Queryable) -> tuple[list[HeadRow], int]:
    """Every head row and the configuration revision (call inside one transaction)."""
    revision = int(await conn.fetchval("SELECT revision FROM config_state"))
    rows = await conn.fetch(HEADS_SQL)
    return [
        HeadRow(r["kind"], r["name"], r["version"], json.loads(r["body"])) for r in rows
    ], revision


def build_config(
    heads: Iterable[HeadRow], *, include_archived: bool = False
) -> tuple[ConfigSet, dict[str, int]]:
    """A ConfigSet and per-experiment versions from head rows; ConfigError if a body is invalid."""
    config = ConfigSet()
    versions: dict[str, int] = {}
    issues: list[ConfigIssue] = []
    for h in heads:
        where = f"postgres:{h.kind}/{h.name}@v{h.version}"
        try:
            if h.kind == "surface":
                config.surfaces[h.name] = Surface.model_validate(h.body)
            elif h.kind == "layer":
                config.layers[h.name] = Layer.model_validate(h.body)
            elif h.kind == "experiment":
                e = Experiment.model_validate(h.body)
                if e.status == "archived" and not include_archived:
                    continue
                config.experiments[h.name] = e
                config.sources[h.name] = where
                versions[h.name] = h.version
        except ValidationError as exc:
            issues.extend(
                ConfigIssue(where, ".".join(map(str, err["loc"])), err["msg"])
                for err in exc.errors()
            )
    if issues:
        raise ConfigError(issues)
    return config, versions


def snapshot_from_heads(heads: Iterable[HeadRow], revision: int, origin: str) -> ConfigSnapshot:
    """A validated snapshot; ConfigError (every problem) if the stored configuration is invalid."""
    config, versions = build_config(heads)
    issues = check_references(config)
    if issues:
        raise ConfigError(issues)
    return ConfigSnapshot(config, versions, origin, revision)


def _rows_of(snapshot: ConfigSnapshot) -> list[dict[str, Any]]:
    c = snapshot.config
    rows: list[dict[str, Any]] = []
    for s in c.surfaces.values():
        rows.append(
            {"kind": "surface", "name": s.name, "version": 0, "body": s.model_dump(mode="json")}
        )
    for layer in c.layers.values():
        rows.append(
            {
                "kind": "layer",
                "name": layer.name,
                "version": 0,
                "body": layer.model_dump(mode="json"),
            }
        )
    for key, e in c.experiments.items():
        version = snapshot.version_of(key)
        rows.append(
            {
                "kind": "experiment",
                "name": key,
                "version": version,
                "body": e.model_dump(mode="json"),
            }
        )
    return rows


def save_cache(path: Path, snapshot: ConfigSnapshot) -> None:
    """Write ``snapshot`` to ``path`` atomically (temporary file, fsync, rename)."""
    doc = {
        "format": CACHE_FORMAT,
        "saved_at": datetime.now(UTC).isoformat(),
        "origin": snapshot.origin,
        "revision": snapshot.revision,
        "heads": _rows_of(snapshot),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cache(path: Path) -> ConfigSnapshot:
    """The snapshot saved in ``path`` (origin ``disk-cache:PATH``); ConfigError if unusable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, Mapping) or doc.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a format-{CACHE_FORMAT} snapshot cache")
        heads = [
            HeadRow(h["kind"], h["name"], int(h["version"]), dict(h["body"])) for h in doc["heads"]
        ]
        revision = int(doc["revision"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            [ConfigIssue(str(path), "", f"is not a usable snapshot cache: {exc}")]
        ) from exc
    return snapshot_from_heads(heads, revision, f"disk-cache:{path}")
