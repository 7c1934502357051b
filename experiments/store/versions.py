"""Typed records of the experiment store: stored versions and the outcome of writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from experiments.schema import Experiment


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One immutable version of a stored object."""

    kind: str
    name: str
    version: int
    body: dict[str, Any]
    status: str | None
    action: str
    author: str
    reason: str | None
    revision: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredExperiment:
    """An experiment as stored: its validated configuration and the version record behind it."""

    experiment: Experiment
    record: VersionRecord

    @property
    def version(self) -> int:
        """The configuration version (carried by exposure records)."""
        return self.record.version


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a write did (or, with ``dry_run``, would do)."""

    kind: str
    name: str
    version: int  # the new version, or the unchanged current one
    changed: bool
    action: str  # create, apply, start, pause, resume, stop, archive, or unchanged
    status: str | None = None
    warnings: tuple[str, ...] = ()
    dry_run: bool = False


def record_from_row(r: Any) -> VersionRecord:
    """A VersionRecord from a row selected with ``VERSION_COLUMNS``."""
    return VersionRecord(
        r["kind"],
        r["name"],
        r["version"],
        json.loads(r["body"]),
        r["status"],
        r["action"],
        r["author"],
        r["reason"],
        r["revision"],
        r["created_at"],
    )


VERSION_COLUMNS = (
    "kind, name, version, body::text AS body, status, action, author, reason, revision, created_at"
)
