"""Formats that several packages write and read, each defined once (docs/design.md, "Shared contracts").

- ``results_key``: the Redis key of a unit's list, written by the gateway's cache fills and by
  ``abgate batch warm``, read by the gateway.
- ``archive_path`` and ``archive_hour``: the archive's object names (Cloud Logging's Cloud
  Storage export layout), written by the gateway's archive sink, read by the cache warm-up and
  ``abgate logs``.

The third shared contract, the ``model_aliases`` query, is Postgres I/O and lives in the store:
``experiments.store.read_aliases``.
"""

from __future__ import annotations

import re
from pathlib import Path

from experiments.modelref import ModelVersion

_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}")
_HOUR_FILE = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2}):00:00_\d{2}:59:59_S\d+\.json$")


def results_key_head(prefix: str, mv: ModelVersion) -> str:
    """The part of ``results_key`` before the unit id: ``{prefix}r:{model}:{version}:``."""
    return f"{prefix}r:{mv.name}:{mv.version}:"


def results_key(prefix: str, mv: ModelVersion, unit_id: str) -> str:
    """The Redis key of ``unit_id``'s list in ``mv``: ``{prefix}r:{model}:{version}:{unit}``.

    The key carries the model version, so activating a new version never serves a stale list.
    """
    return f"{prefix}r:{mv.name}:{mv.version}:{unit_id}"


def archive_path(root: Path, log_id: str, ts: str) -> Path:
    """The export object of the hour of ``ts``: ``ROOT/LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``.

    ``ts`` is a UTC timestamp (``2026-11-26T18:04:30.123456Z``) or its first 13 characters
    (``2026-11-26T18``). Raises ValueError for any other shape (a year of other than 4 digits
    would make paths such as ``999-/6-/1T/…``).
    """
    if not _HOUR.match(ts):
        raise ValueError(f"not a UTC timestamp with a 4-digit year: {ts[:32]!r}")
    y, mo, d, h = ts[0:4], ts[5:7], ts[8:10], ts[11:13]
    return root / log_id / y / mo / d / f"{h}:00:00_{h}:59:59_S0.json"


def archive_hour(path: str) -> str | None:
    """The hour (``2026-11-26T18``) of an archive object named by ``archive_path`` (any shard
    ``S<n>``), or None if ``path`` (posix, relative or absolute) does not follow the layout."""
    m = _HOUR_FILE.search(path)
    if m is None:
        return None
    y, mo, d, h = m.groups()
    return f"{y}-{mo}-{d}T{h}"
