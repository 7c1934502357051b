"""Helpers of the promotion and lineage tests: an experiment, archives with known results, and
the CLI environment that points abgate at the test's Postgres schema and MLflow registry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from tests.analysis.analysis_testkit import T0, ArchiveWriter

KEY = "home-recs-demo"
EXPERIMENT_YAML = f"""
key: {KEY}
surface: home_top
status: running
variants:
  - {{key: control,   weight: 50, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: 50, model: "models:/home_recs/2"}}
metrics:
  - {{name: conversion, kind: proportion, outcome: purchase, role: primary}}
  - {{name: latency, kind: mean, outcome: latency, role: guardrail, direction: decrease,
     margin: 0.05}}
"""
SURFACES_YAML = """
surfaces:
  - {name: home_top, default_model: "models:/home_recs@champion"}
"""


# The contract's pins table (docs/design.md, "Pinned arms"); created here when the migrations
# of this branch do not create it yet.
def write_archive(
    root: Path,
    *,
    units: dict[str, int],
    buyers: dict[str, int],
    latency: dict[str, float],
) -> Path:
    """Exposures of ``units[arm]`` units; the first ``buyers[arm]`` of each arm purchase once;
    every unit reports a latency of ``latency[arm] + (i % 5)`` (a mean guardrail, low noise)."""
    w = ArchiveWriter(root)
    for arm, n in units.items():
        for i in range(n):
            unit = f"{arm}-{i}"
            t = T0 + timedelta(hours=i % 48, minutes=i % 60)
            w.exposure(unit, arm, t, experiment=KEY)
            w.outcome(unit, "latency", t + timedelta(minutes=1), latency[arm] + (i % 5))
            if i < buyers[arm]:
                w.outcome(unit, "purchase", t + timedelta(minutes=30), 10.0)
    return w.write()


def cli_env(pg_dsn: str, schema: str, experiments_dir: Path, registry: Any) -> dict[str, str]:
    """Environment for ``abgate`` commands run by CliRunner in the tests."""
    return {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_EXPERIMENTS_DIR": str(experiments_dir),
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "USER": "tester",
    }


async def load_version(pool: asyncpg.Pool, version: str, item: str) -> None:
    """Active results for ``home_recs/version`` (two units and a default list)."""
    from batch import load_results

    rows = [
        ("u1", [{"id": item, "score": 1.0}]),
        ("__default__", [{"id": item, "score": 1.0}]),
    ]
    await load_results(pool, iter(rows), "home_recs", version)
