"""Write a large synthetic archive (DESIGN.md layout) with DuckDB, fast and in bounded memory.

Each of ``units`` units is exposed ``lines/units·0.6`` times and has outcomes for the rest of
its lines (clicks, one purchase in ten with a revenue value), spread over ``days`` days; 1% of
the lines are delivered twice and 0.1% of exposures are forced. Exposures carry the phase
fields the gateway writes: two 50/50 phases (a traffic change on 2026-11-23: the report's
phase machinery runs, nothing is excluded) and each unit's bucket, consistent with its arm. Lines are partitioned by hour
into ``abgate-events/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from experiments import archive_path

EXPERIMENT_YAML = """key: bench-exp
surface: home_top
variants:
  - {key: control, weight: 50, model: "models:/home_recs@champion"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
metrics:
  - {name: conversion, kind: proportion, outcome: purchase}
  - {name: revenue, kind: mean, outcome: purchase}
  - {name: clicks_per_exposure, kind: ratio, numerator: click, denominator: exposures}
"""

_LINES = """
WITH base AS (
  SELECT i, i % {units} AS u, i // {units} AS r,
         hash(i % {units}) % 2 AS v, hash(i * 7919) % 1000 AS h
  FROM range({lines}) t(i)
),
ev AS (
  SELECT i, 'u' || u AS unit_id, v, h,
         (r % 5) < 3 AS is_exposure,
         TIMESTAMP '2026-11-20 00:00:00' + to_microseconds(
           CAST((r * {spread} + (hash(u) % 3600000000)) AS BIGINT)) AS ts
  FROM base
),
lines AS (
  SELECT i, ts, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS tss, unit_id, v, h, is_exposure FROM ev
  UNION ALL
  SELECT i, ts, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ'), unit_id, v, h, is_exposure FROM ev WHERE h < 10
)
SELECT strftime(ts, '%Y/%m/%d/%H') AS part,
  'projects/bench/logs/abgate-events' AS logName, 'ev' || i AS insertId, tss AS timestamp,
  'INFO' AS severity, {{'type': 'generic_task', 'labels': {{}}}} AS resource,
  CASE WHEN is_exposure THEN json_object(
      'type', 'exposure', 'event_id', 'ev' || i, 'ts', tss, 'experiment', 'bench-exp',
      'variant', CASE WHEN v = 0 THEN 'control' ELSE 'treatment' END, 'unit_id', unit_id,
      'surface', 'home_top', 'model', 'home_recs', 'model_version', '7', 'items', ['sku-1', 'sku-2', 'sku-3'],
      'config_version', 1, 'source', 'cache', 'request_id', 'rq' || i, 'forced', CASE WHEN h = 999 THEN TRUE END,
      'phase', CASE WHEN ts < TIMESTAMP '2026-11-23 00:00:00' THEN 'phase-a' ELSE 'phase-b' END,
      'weights', [{{'variant': 'control', 'weight': 50, 'lo': 0, 'hi': 5000}},
                  {{'variant': 'treatment', 'weight': 50, 'lo': 5000, 'hi': 10000}}],
      'bucket', v * 5000 + hash(unit_id || ':b') % 5000)
    ELSE json_object(
      'type', 'outcome', 'event_id', 'ev' || i, 'ts', tss, 'unit_id', unit_id,
      'name', CASE WHEN h < 100 + 10 * v THEN 'purchase' ELSE 'click' END,
      'value', CASE WHEN h < 100 + 10 * v THEN round(10 + h / 3.0, 2) END, 'item_id', 'sku-1')
  END AS jsonPayload
FROM lines
"""


def generate(root: Path, *, lines: int, units: int, days: int = 7) -> Path:
    """Write the archive under ``root`` (replacing it); return the root."""
    marker = root.parent / ".abgate-analysis-bench"
    if root.exists():
        # Only ever delete an archive this generator wrote: the folder may be someone else's.
        if not marker.exists():
            raise SystemExit(
                f"{root} exists and was not written by this benchmark; pick another --dir"
            )
        shutil.rmtree(root)
    staging = root.parent / (root.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    rounds = max(1, lines // units)
    spread = int(days * 86_400_000_000 / rounds)  # µs between a unit's successive lines
    sql = _LINES.format(lines=lines, units=units, spread=spread)
    con = duckdb.connect(config={"memory_limit": "4GB", "preserve_insertion_order": "false"})
    con.execute(f"COPY ({sql}) TO '{staging}' (FORMAT JSON, PARTITION_BY (part))")
    con.close()
    for d in sorted(staging.glob("part=*")):
        part = d.name.split("=", 1)[1].replace("%2F", "/")
        y, m, day, hour = part.split("/")
        target = archive_path(root, "abgate-events", f"{y}-{m}-{day}T{hour}")
        target.parent.mkdir(parents=True, exist_ok=True)
        files = sorted(d.glob("*.json"))
        with target.open("wb") as out:
            for f in files:
                with f.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    shutil.rmtree(staging)
    (root.parent / "bench-exp.yaml").write_text(EXPERIMENT_YAML, encoding="utf-8")
    return root
