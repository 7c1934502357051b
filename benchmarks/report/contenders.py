"""The three ways of computing the report's numbers that the benchmark times.

Each runs in its own process (``python -m benchmarks.report.contenders NAME ARCHIVE CONFIG``) so
that its peak memory is its own; it prints one JSON line with its wall time and a checksum
(units per variant) that the runner compares across contenders.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def report(root: Path, config: Path) -> dict[str, Any]:
    """The real thing: ``analysis.build_report`` (DuckDB aggregation + statistics)."""
    from analysis import build_report
    from experiments import load_experiment_file

    rep = build_report(load_experiment_file(config), root)
    return {k: v.units for k, v in rep.variants.items()}


def scan(root: Path, config: Path) -> dict[str, Any]:
    """The bare floor: DuckDB reads the same files (type, unit, variant) and groups by unit."""
    from analysis.archive import archive_connection

    with archive_connection(root) as con:
        rows = con.execute(
            "SELECT variant, count(*) FROM (SELECT jsonPayload.unit_id AS u, any_value(jsonPayload.variant) AS variant "
            "FROM abgate_log_entries WHERE jsonPayload.type = 'exposure' GROUP BY 1) GROUP BY 1"
        ).fetchall()
    return {str(v): int(n) for v, n in rows}


def scan_fields(root: Path, config: Path) -> dict[str, Any]:
    """The floor for what the report must read: every payload field it uses, grouped by unit."""
    from analysis.archive import archive_connection

    with archive_connection(root) as con:
        rows = con.execute(
            "SELECT variant, count(*) FROM (SELECT jsonPayload.unit_id AS u, "
            "any_value(jsonPayload.variant) FILTER (jsonPayload.type = 'exposure') AS variant, "
            "count(jsonPayload.event_id), min(jsonPayload.ts), count(jsonPayload.experiment), "
            "count(jsonPayload.forced), count(jsonPayload.name), sum(jsonPayload.value) "
            "FROM abgate_log_entries GROUP BY 1) GROUP BY 1"
        ).fetchall()
    return {str(v): int(n) for v, n in rows}


def pandas(root: Path, config: Path) -> dict[str, Any]:
    """What an analyst would write: pandas reading the JSON lines, dedup, groupby, merge."""
    import pandas as pd

    frames = []
    cols = ["type", "event_id", "ts", "experiment", "variant", "unit_id", "forced", "name", "value"]
    for f in sorted(root.rglob("*.json")):
        for chunk in pd.read_json(f, lines=True, chunksize=200_000):
            p = pd.json_normalize(chunk["jsonPayload"].tolist())
            frames.append(p.reindex(columns=cols))
    ev = pd.concat(frames, ignore_index=True).drop_duplicates("event_id")
    ev["ts"] = pd.to_datetime(ev["ts"], utc=True)
    exp = ev[
        (ev["type"] == "exposure") & (ev["experiment"] == "bench-exp") & ~ev["forced"].eq(True)
    ]
    exp = exp.sort_values("ts")
    first = exp.groupby("unit_id").agg(
        variant=("variant", "first"), first_ts=("ts", "first"), exposures=("ts", "size")
    )
    out = ev[ev["type"] == "outcome"].merge(first, left_on="unit_id", right_index=True)
    out = out[out["ts"] >= out["first_ts"]]
    per = out.assign(purchase=out["name"] == "purchase", click=out["name"] == "click")
    per["rev"] = per["value"].where(per["purchase"], 0.0).fillna(0.0)
    agg = per.groupby("unit_id").agg(
        purchases=("purchase", "sum"), clicks=("click", "sum"), revenue=("rev", "sum")
    )
    units = first.join(agg).fillna(0)
    units["conversion"] = (units["purchases"] > 0).astype(float)
    stats = units.groupby("variant").agg(
        n=("conversion", "size"), conv=("conversion", "mean"), rev=("revenue", "mean"), rev_var=("revenue", "var"),
        clicks=("clicks", "sum"), exposures=("exposures", "sum"),
    )  # fmt: skip
    return {str(k): int(v) for k, v in stats["n"].items()}


CONTENDERS = {
    "report": report,
    "duckdb-scan": scan,
    "duckdb-scan-fields": scan_fields,
    "pandas": pandas,
}


def main() -> None:
    """Run one contender and print its result line."""
    name, root, config = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    t = time.perf_counter()
    units = CONTENDERS[name](root, config)
    print(json.dumps({"name": name, "seconds": time.perf_counter() - t, "units": units}))


if __name__ == "__main__":
    main()
