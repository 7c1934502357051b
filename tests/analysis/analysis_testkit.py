"""Helpers for the analysis tests: synthetic archives in Cloud Logging's export layout.

The gateway's sink is not importable from analysis tests (analysis reads logs, not code), so
this writes the DESIGN.md format itself: ``LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``, one
LogEntry per line.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from experiments import Experiment, archive_path, parse_experiment, utc_timestamp

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

EXPERIMENT_YAML = """
key: home-recs-demo
surface: home_top
status: running
variants:
  - {key: control,   weight: 50, model: "models:/home_recs@champion"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
metrics:
  - {name: conversion, kind: proportion, outcome: purchase}
  - {name: revenue, kind: mean, outcome: purchase}
  - {name: clicks_per_exposure, kind: ratio, numerator: click, denominator: exposures}
"""


@functools.lru_cache(maxsize=8)
def experiment(yaml_text: str = EXPERIMENT_YAML) -> Experiment:
    """The demo-like experiment (or another one given as YAML); parsed once (it is frozen)."""
    return parse_experiment(yaml_text)


@functools.lru_cache(maxsize=64)
def logged_weights(
    weights: tuple[tuple[str, float], ...],
) -> tuple[dict[str, Any], ...]:
    """A phase's ``weights`` field as the gateway logs it: each arm with its bucket range
    (cached: the exact-rational bounds cost more than the rest of a record)."""
    from experiments import bucket_bounds

    bounds = bucket_bounds([w for _, w in weights])
    lows = (0, *bounds[:-1])
    return tuple(
        {"variant": v, "weight": w, "lo": lo, "hi": hi}
        for (v, w), lo, hi in zip(weights, lows, bounds, strict=True)
    )


def iso(ts: datetime) -> str:
    """DESIGN.md's timestamp form: microseconds and a Z (the records' own formatter)."""
    return utc_timestamp(ts)


@dataclass
class ArchiveWriter:
    """Collects payloads and writes them as an archive under ``root`` (``write()``)."""

    root: Path
    log_id: str = "abgate-events"
    lines: dict[Path, list[str]] = field(default_factory=lambda: defaultdict(list))
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _paths: dict[str, Path] = field(default_factory=dict)

    def entry(self, payload: dict[str, Any], ts: datetime) -> dict[str, Any]:
        """Add one payload as a LogEntry line in the file of its hour; return the entry."""
        e = {
            "logName": f"projects/test/logs/{self.log_id}",
            "insertId": payload.get("event_id", ""),
            "timestamp": iso(ts),
            "severity": "INFO",
            "resource": {"type": "generic_task", "labels": {}},
            "jsonPayload": payload,
        }
        self.lines[self._path(e["timestamp"])].append(json.dumps(e))
        return e

    def _path(self, stamp: str) -> Path:
        """The archive file of the hour of ``stamp`` (``archive_path``, one per hour)."""
        hour = stamp[:13]
        path = self._paths.get(hour)
        if path is None:
            path = self._paths[hour] = archive_path(self.root, self.log_id, hour)
        return path

    def exposure(
        self,
        unit: str,
        variant: str,
        ts: datetime,
        *,
        experiment: str = "home-recs-demo",
        forced: bool = False,
        event_id: str | None = None,
        phase: tuple[str, list[tuple[str, float]]] | None = None,
        bucket: int | None = None,
        holdout: bool = False,
        attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Log an exposure of ``unit`` in ``variant`` at ``ts``; ``phase`` = (id, weights) adds
        the phase fields as the gateway writes them (experiments/allocation.py)."""
        p: dict[str, Any] = {
            "type": "exposure", "event_id": event_id or f"e{next(self._ids)}", "ts": iso(ts),
            "experiment": experiment, "variant": variant, "unit_id": unit, "surface": "home_top",
            "model": "home_recs", "model_version": "7", "items": ["sku-1", "sku-2"],
            "config_version": 1, "source": "cache", "request_id": f"r{unit}",
        }  # fmt: skip
        if forced:
            p["forced"] = True
        if phase is not None:
            pid, weights = phase
            p["phase"] = pid
            p["weights"] = [dict(arm) for arm in logged_weights(tuple(weights))]
        if bucket is not None:
            p["bucket"] = bucket
        if holdout:
            p["holdout"] = True
        if attributes:
            p["attributes"] = attributes
        return self.entry(p, ts)

    def outcome(
        self,
        unit: str,
        name: str,
        ts: datetime,
        value: float | None = None,
        *,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Log an outcome of ``unit`` at ``ts``."""
        p = {"type": "outcome", "event_id": event_id or f"o{next(self._ids)}", "ts": iso(ts),
             "unit_id": unit, "name": name, "value": value, "item_id": None}  # fmt: skip
        return self.entry(p, ts)

    def raw(self, line: str, ts: datetime) -> None:
        """Add a line verbatim (other log entries, duplicates)."""
        self.lines[self._path(iso(ts))].append(line)

    def write(self) -> Path:
        """Write every file; return the archive root."""
        for path, lines in self.lines.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.root


def simulate_archive(
    root: Path,
    *,
    units: int,
    rates: dict[str, float],
    revenue: dict[str, float] | None = None,
    days: int = 3,
    seed: int = 0,
) -> Path:
    """A random archive: each unit exposed 1–3 times on one of ``days``; purchases at ``rates``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = ArchiveWriter(root)
    keys = list(rates)
    for u in range(units):
        v = keys[int(rng.integers(len(keys)))]
        t = T0 + timedelta(days=int(rng.integers(days)), minutes=int(rng.integers(600)))
        for k in range(int(rng.integers(1, 4))):
            w.exposure(f"u{u}", v, t + timedelta(minutes=5 * k))
        if rng.random() < rates[v]:
            w.outcome(
                f"u{u}",
                "purchase",
                t + timedelta(minutes=30),
                float(rng.exponential((revenue or {}).get(v, 10.0))),
            )
        for _ in range(int(rng.poisson(1.0))):
            w.outcome(f"u{u}", "click", t + timedelta(minutes=10))
    return w.write()


def aggregates_of(columns: dict[str, Any], pairs: list[tuple[str, str]]) -> Any:
    """Aggregates of per-unit numpy columns (what the engine would return for them)."""
    import numpy as np

    from analysis import Aggregates

    n = len(next(iter(columns.values())))
    mean = {k: float(np.mean(v)) for k, v in columns.items()}
    var = {k: float(np.var(v, ddof=1)) if n > 1 else 0.0 for k, v in columns.items()}
    cov = {(a, b): float(np.cov(columns[a], columns[b])[0, 1]) if n > 1 else 0.0 for a, b in pairs}
    return Aggregates(n, mean, var, cov)
