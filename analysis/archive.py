"""Reading a local log archive (Cloud Logging's export layout) with DuckDB.

The archive is every ``*.json`` file below a root folder, one JSON LogEntry per line
(DESIGN.md, "The archive"); a real export downloaded from Cloud Storage reads the same way.
DuckDB scans the files in parallel, runs the per-unit aggregation of ``analysis.sql`` and
returns per-(variant, look day) sufficient statistics: Python never sees an event.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import orjson

from analysis.errors import ArchiveError, MalformedArchive
from analysis.report import Skipped, SkippedLine
from analysis.source import Cohort
from analysis.sql import (
    QueryPlan,
    ReadCount,
    Scan,
    build_plan,
    payload_fields,
    scan_from_rows,
    skipped_by_file_sql,
)
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


def read_json(files: Sequence[Path], segment: str | None = None, *, filename: bool = False) -> str:
    """The ``read_json`` relation over ``files``: ``logName`` and the ``jsonPayload`` fields.

    ``ignore_errors``: a line that is not a JSON object (a torn write) becomes a row of NULLs,
    and a field of the wrong type (a ``ts`` that is no time) NULL, instead of failing the
    whole read; the report counts and skips those (``analysis.sql.ReadCount``).
    """
    struct = ", ".join(f"{name} {typ}" for name, typ in payload_fields(segment))
    file_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    return (
        f"read_json({file_list}, format = 'newline_delimited', records = true, "
        f"ignore_errors = true, filename = {str(filename).lower()}, "
        f"columns = {{'logName': 'VARCHAR', 'jsonPayload': 'STRUCT({struct})'}})"
    )


@contextmanager
def archive_connection(
    root: Path,
    *,
    memory_limit: str = "2GB",
    segment: str | None = None,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a view ``abgate_log_entries`` over the archive's files.

    The view reads only ``jsonPayload`` with an explicit schema: missing fields are NULL, other
    keys are ignored. ``records = true`` matters: without it DuckDB samples every file to detect
    the layout, which made a 100-file archive 50x slower to scan. ``memory_limit`` bounds
    DuckDB's memory; beyond it, operators spill to a private temporary folder. ``threads``
    (default: DuckDB's, one per core) changes the speed, never a figure (sql.py, "Reproducible").
    """
    files = archive_files(root)
    spill = tempfile.TemporaryDirectory(prefix="abgate-duckdb-")
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill.name})
    con.execute("SET enable_progress_bar = false")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    # The looks table has one row per day: joining each unit's running rows to it by date
    # ranges is cheapest as a nested loop (a merge join would sort every row; see sql.py).
    con.execute("SET nested_loop_join_threshold = 100000")
    try:
        try:
            con.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM {read_json(files, segment)}")
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


def _line_problem(raw: bytes) -> str | None:
    """Why the report skips this line (the SQL's TORN and COMPLETE, in Python), or None."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not valid JSON (a torn or cut-short line?)"
    if not isinstance(entry, dict):
        return f"not a JSON object but {type(entry).__name__}"
    payload = entry.get("jsonPayload")
    if payload is None and entry.get("logName") is None:
        return "an object with neither jsonPayload nor logName: not a log entry"
    if not isinstance(payload, dict) or payload.get("type") not in ("exposure", "outcome"):
        return None
    kind = payload["type"]
    required = ("event_id", "unit_id", "ts") + (
        ("experiment", "variant") if kind == "exposure" else ("name",)
    )
    missing = [f for f in required if payload.get(f) is None]
    if missing:
        return f"{kind} record without {', '.join(missing)}"
    ts = payload["ts"]
    try:
        datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (AttributeError, ValueError):  # not a string, or not a time
        return f"{kind} record whose ts {str(ts)[:40]!r} is not a time"
    return None


def locate_skipped(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    read: ReadCount,
    segment: str | None = None,
    *,
    limit: int = 5,
) -> Skipped:
    """Which files hold the lines the scan skipped (DuckDB, per file) and where the first
    ``limit`` are (Python reads only those files). Cheap when nothing was skipped: no work."""
    if read.skipped == 0:
        return Skipped(read.total)
    files = archive_files(root)
    try:
        rows = con.execute(skipped_by_file_sql(read_json(files, segment, filename=True)))
        per_file = {str(f): int(t) + int(i) for f, t, i in rows.fetchall()}
    except duckdb.Error as exc:
        raise ArchiveError(f"cannot read archive {root}: {exc}") from exc
    first: list[SkippedLine] = []
    for name in per_file:
        with open(name, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if len(first) >= limit:
                    break
                if not raw.strip():
                    continue  # read_json skips empty lines, and so does the report
                problem = _line_problem(raw)
                if problem is not None:
                    first.append(SkippedLine(name, number, problem))
        if len(first) >= limit:
            break
    return Skipped(read.total, read.torn, read.incomplete, per_file, first)


def scan_archive(
    experiment: Experiment,
    root: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    cuped_window: timedelta | None = None,
    segment: str | None = None,
    threads: int | None = None,
    other_salt: frozenset[str] = frozenset(),
) -> tuple[QueryPlan, Scan, Skipped]:
    """Per-(variant, phase, look day[, segment]) sufficient statistics of ``experiment``'s
    metrics, with its phases and the units excluded by bucket, and the lines it skipped
    (torn lines, incomplete records: counted, located, and left out of the figures).
    ``other_salt``: phases left out (``analysis.sql.build_plan``)."""
    plan = build_plan(
        experiment,
        VIEW,
        dialect="duckdb",
        since=since,
        until=until,
        cuped_window=cuped_window,
        segment=segment,
        lines=True,
        other_salt=other_salt,
    )
    with archive_connection(root, segment=segment, threads=threads) as con:
        scan = run_plan(con, plan, root)
        return plan, scan, locate_skipped(con, root, scan.read, segment)


@dataclass(frozen=True, slots=True)
class ArchiveSource:
    """A local archive aggregated in DuckDB: the ``CohortSource`` of ``abgate report --archive``.

    Torn lines and incomplete records are skipped, counted and located (``Report.skipped``);
    with ``strict``, MalformedArchive names the first of them instead.
    """

    root: Path
    threads: int | None = None  # DuckDB's threads (default: one per core); figures don't change

    @property
    def label(self) -> str:
        """The archive root as given."""
        return str(self.root)

    def read(
        self,
        experiment: Experiment,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        cuped_window: timedelta | None = None,
        segment: str | None = None,
        strict: bool = False,
        other_salt: frozenset[str] = frozenset(),
    ) -> Cohort:
        """``scan_archive`` of the experiment; MalformedArchive on a skipped line if ``strict``."""
        plan, scan, skipped = scan_archive(
            experiment,
            Path(self.root),
            since=since,
            until=until,
            cuped_window=cuped_window,
            segment=segment,
            threads=self.threads,
            other_salt=other_salt,
        )
        if strict and skipped.lines:
            where = f"{skipped.first[0]}" if skipped.first else "unknown line"
            raise MalformedArchive(
                f"archive {self.root}: {where} ({skipped.lines:,} malformed line"
                f"{'s' * (skipped.lines != 1)} in all; without --strict the report skips and "
                "counts them; `abgate logs verify` lists torn lines per hour)"
            )
        return Cohort(plan, scan, skipped)
