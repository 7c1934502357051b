"""Reading a local log archive (Cloud Logging's export layout) with DuckDB.

The archive is every ``*.json`` file below a root folder, one JSON LogEntry per line
(DESIGN.md, "The archive"); a real export downloaded from Cloud Storage reads the same way.
DuckDB scans the files in parallel, runs the per-unit aggregation of ``analysis.sql`` and
returns per-(variant, look day) sufficient statistics: Python never sees an event.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from analysis.errors import ArchiveError
from analysis.sql import QueryPlan, Scan, build_plan, payload_fields, scan_from_rows
from experiments import Experiment

VIEW = "abgate_log_entries"


def archive_files(root: Path) -> list[Path]:
    """Every ``*.json`` file below ``root``; ArchiveError when there is none."""
    if not root.is_dir():
        raise ArchiveError(
            f"archive {root} is not a directory (pass --archive DIR, the archive root)"
        )
    files = sorted(p for p in root.rglob("*.json") if p.is_file())
    if not files:
        raise ArchiveError(
            f"archive {root} holds no *.json log file (expected LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json)"
        )
    return files


@contextmanager
def archive_connection(
    root: Path, *, memory_limit: str = "2GB", segment: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a view ``abgate_log_entries`` over the archive's files.

    The view reads only ``jsonPayload`` with an explicit schema: missing fields are NULL, other
    keys are ignored. ``records = true`` matters: without it DuckDB samples every file to detect
    the layout, which made a 100-file archive 50x slower to scan. ``memory_limit`` bounds
    DuckDB's memory; beyond it, operators spill to a private temporary folder.
    """
    files = archive_files(root)
    struct = ", ".join(f"{name} {typ}" for name, typ in payload_fields(segment))
    spill = tempfile.TemporaryDirectory(prefix="abgate-duckdb-")
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill.name})
    con.execute("SET enable_progress_bar = false")
    # The looks table has one row per day: joining each unit's running rows to it by date
    # ranges is cheapest as a nested loop (a merge join would sort every row; see sql.py).
    con.execute("SET nested_loop_join_threshold = 100000")
    try:
        file_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        try:
            con.execute(
                f"CREATE VIEW {VIEW} AS SELECT jsonPayload FROM read_json({file_list}, "
                f"format = 'newline_delimited', records = true, columns = {{'jsonPayload': 'STRUCT({struct})'}})"
            )
        except duckdb.Error as exc:
            raise ArchiveError(f"cannot read archive {root}: {exc}") from exc
        yield con
    finally:
        con.close()
        spill.cleanup()


def run_plan(con: duckdb.DuckDBPyConnection, plan: QueryPlan, root: Path) -> Scan:
    """Execute a DuckDB plan and return what it found; driver errors become ArchiveError."""
    try:
        cur = con.execute(plan.sql)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    except duckdb.Error as exc:
        raise ArchiveError(f"cannot read archive {root}: {exc}") from exc
    return scan_from_rows(plan, rows)


def scan_archive(
    experiment: Experiment,
    root: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    cuped_window: timedelta | None = None,
    segment: str | None = None,
) -> tuple[QueryPlan, Scan]:
    """Per-(variant, phase, look day[, segment]) sufficient statistics of ``experiment``'s
    metrics, with its phases and the units excluded by bucket."""
    plan = build_plan(
        experiment,
        VIEW,
        dialect="duckdb",
        since=since,
        until=until,
        cuped_window=cuped_window,
        segment=segment,
    )
    with archive_connection(root, segment=segment) as con:
        return plan, run_plan(con, plan, root)
