"""The BigQuery path gives the same numbers as the local path on the same data.

``test_emulator_*`` run the real google-cloud-bigquery client against the ``bqemulator``
package (a local BigQuery REST API backed by DuckDB), started here on free ports; install it
with ``sh tests/analysis/setup_bqemulator.sh``. ``test_bigquery_sql_*`` need no emulator: they
run the BigQuery-dialect statement, transpiled back, in DuckDB.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from analysis import BigQueryError, Report, ReportOptions, analyse, build_report
from analysis.sql import PAYLOAD_FIELDS, build_plan, scan_from_rows
from tests.analysis.analysis_testkit import T0, experiment, simulate_archive

REPO = Path(__file__).resolve().parents[2]
EMULATOR = Path(
    os.environ.get("ABGATE_BQEMULATOR", REPO / ".venv" / "bqemulator" / "bin" / "bqemulator")
)
needs_emulator = pytest.mark.skipif(
    not EMULATOR.exists(),
    reason=f"no bqemulator at {EMULATOR} (sh tests/analysis/setup_bqemulator.sh)",
)
# every per-look statistic is in play: CUPED per look and the sequential test over the looks
OPTIONS = ReportOptions(cuped_window=timedelta(days=2), sequential_tau=0.2)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_archive(
        tmp_path_factory.mktemp("arch"),
        units=600,
        rates={"control": 0.2, "treatment": 0.3},
        days=3,
        seed=3,
    )


def _payloads(root: Path, *, attributes: bool = False) -> list[dict[str, Any]]:
    fields = {f for f, _ in PAYLOAD_FIELDS} | ({"attributes"} if attributes else set())
    rows = []
    for f in sorted(root.rglob("*.json")):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            payload = {k: v for k, v in e["jsonPayload"].items() if k in fields}
            rows.append({"timestamp": e["timestamp"], "jsonPayload": payload})
    # the same event twice (at-least-once delivery): both paths must drop it
    return [*rows, rows[0], rows[5]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a running emulator listens."""

    rest: str  # http://127.0.0.1:PORT: the client's api_endpoint, or BIGQUERY_EMULATOR_HOST
    grpc: str  # 127.0.0.1:PORT: the Storage Read API


@pytest.fixture(scope="module")
def emulator_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    rest, grpc = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("bqemu") / "bqemulator.log"
    args = [
        str(EMULATOR),
        "start",
        "--rest-port",
        str(rest),
        "--grpc-port",
        str(grpc),
        "--project",
        "test",
        "--log-format",
        "json",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=log.parent
    )
    drain = None
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # wait for the server's own "listening" lines, not a timer
            seen.append(line)
            if '"grpc.listen"' in line:  # logged after "rest.listen": both servers are up
                break
        else:
            pytest.fail("bqemulator exited before listening:\n" + "".join(seen[-20:]))
        # It logs every gRPC call: keep reading, or it blocks once the pipe is full.
        drain = threading.Thread(
            target=_copy_lines, args=(proc.stdout, log), name="bqemulator-log", daemon=True
        )
        drain.start()
        yield Endpoints(f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _copy_lines(lines: IO[str], log: Path) -> None:
    with log.open("a") as f:
        f.writelines(lines)


@pytest.fixture(scope="module")
def emulator(emulator_endpoints: Endpoints) -> str:
    """The REST endpoint of an emulator started for this module."""
    return emulator_endpoints.rest


@pytest.fixture(scope="module")
def table(emulator: str, archive: Path) -> str:
    return _load(emulator, archive, "abgate_events")


@pytest.fixture(scope="module")
def ramp_table(emulator: str, ramp_archive: Path) -> str:
    return _load(emulator, ramp_archive, "abgate_ramp")


@pytest.fixture(scope="module")
def ramp_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.analysis.test_phased_report import ramped_archive

    return ramped_archive(tmp_path_factory.mktemp("ramp"), n=600, holdout=100)[0]


def _load(
    emulator: str,
    archive: Path,
    name: str,
    extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
    *,
    without: frozenset[str] = frozenset(),
    attributes: tuple[str, ...] = (),
) -> str:
    """Load the archive's payloads into a sink-like table; ``without``: payload fields the
    table's schema lacks (a table created before the gateway logged them); ``attributes``: the
    request attributes the table has (``jsonPayload.attributes``, a RECORD)."""
    from google.cloud import bigquery

    from analysis.bigquery import make_client

    client = make_client("test", endpoint=emulator)
    f = bigquery.SchemaField
    bq_type = {
        "VARCHAR": "STRING",
        "BOOLEAN": "BOOLEAN",
        "DOUBLE": "FLOAT",
        "TIMESTAMP": "TIMESTAMP",
        "INTEGER": "INTEGER",
    }
    # a logging sink types RFC 3339 strings such as ts as TIMESTAMP, and a list of objects as
    # a REPEATED RECORD
    arm = [f("variant", "STRING"), f("weight", "FLOAT"), f("lo", "INTEGER"), f("hi", "INTEGER")]
    payload = [
        f(name, "RECORD", mode="REPEATED", fields=arm) if name == "weights" else f(name, bq_type[t])
        for name, t in PAYLOAD_FIELDS
        if name not in without
    ]
    if attributes:
        payload.append(f("attributes", "RECORD", fields=[f(a, "STRING") for a in attributes]))
    schema = [f("timestamp", "TIMESTAMP"), f("jsonPayload", "RECORD", fields=payload)]
    client.create_dataset("logs", exists_ok=True)
    client.create_table(bigquery.Table(f"test.logs.{name}", schema=schema))
    rows = _payloads(archive, attributes=bool(attributes)) + list(extra)
    for r in rows:
        r["jsonPayload"] = {k: v for k, v in r["jsonPayload"].items() if k not in without}
    for i in range(0, len(rows), 2000):
        assert client.insert_rows_json(f"test.logs.{name}", rows[i : i + 2000]) == []
    return f"test.logs.{name}"


def _figures(report: Report) -> dict[str, Any]:
    """The report as JSON, with ``skipped`` reduced to what both paths share: the table holds
    two duplicate rows more than the archive has lines, and no file or line locations."""
    d = report.to_dict()
    if "skipped" in d:
        d["skipped"] = {k: d["skipped"][k] for k in ("lines", "torn", "incomplete")}
    return d


def _close(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    else:
        assert a == b


@needs_emulator
def test_emulator_report_equals_the_local_report(emulator: str, table: str, archive: Path) -> None:
    from analysis.bigquery import BigQuerySource, make_client

    client = make_client("test", endpoint=emulator)
    remote = build_report(experiment(), BigQuerySource(table, client), OPTIONS)
    local = build_report(experiment(), archive, options=OPTIONS)
    assert sum(v.units for v in local.variants.values()) == 600
    _close(_figures(remote), _figures(local))
    assert [d.new_units for d in remote.daily] == [d.new_units for d in local.daily]
    assert len(local.daily) >= 3  # one look per day with events
    for r, lo in zip(remote.daily, local.daily, strict=True):
        assert r.day == lo.day
        _close(
            {m: {v: vars_of(e) for v, e in by.items()} for m, by in r.estimates.items()},
            {m: {v: vars_of(e) for v, e in by.items()} for m, by in lo.estimates.items()},
        )


@needs_emulator
def test_emulator_report_of_a_ramp_equals_the_local_report(
    emulator: str, ramp_table: str, ramp_archive: Path
) -> None:
    from analysis.bigquery import BigQuerySource, make_client

    remote = build_report(
        experiment(), BigQuerySource(ramp_table, make_client("test", endpoint=emulator))
    )
    local = build_report(experiment(), ramp_archive)
    assert len(local.phases) == 2 and local.metrics[0].stratified
    assert local.holdout is not None and sum(p.excluded.get("control", 0) for p in local.phases)
    _close(_figures(remote), _figures(local))


@pytest.fixture(scope="module")
def salt_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.analysis.test_salt_change import salt_changed_archive

    return salt_changed_archive(tmp_path_factory.mktemp("salt"), n1=600, n2=400, seed=2)[0]


@needs_emulator
@pytest.mark.parametrize("which", ["run_1", "run_2"])
def test_emulator_report_of_a_salt_change_equals_the_local_report(
    emulator: str, salt_archive: Path, which: str
) -> None:
    """Both reads of a salt-changed window (the witnesses, then without the other salt's
    phases, with the cut) give the local figures in BigQuery's dialect."""
    from analysis.bigquery import BigQuerySource, make_client
    from tests.analysis.test_salt_change import RUN_1_FILE, RUN_2_FILE

    exp = RUN_1_FILE if which == "run_1" else RUN_2_FILE
    table = _load(emulator, salt_archive, f"abgate_salt_{which}")
    remote = build_report(exp, BigQuerySource(table, make_client("test", endpoint=emulator)))
    local = build_report(exp, salt_archive)
    assert len(local.phases) == 1 and len(local.warnings) == 1
    assert ("counted only until" in local.warnings[0]) == (which == "run_1")
    _close(_figures(remote), _figures(local))


def test_bigquery_sql_of_a_salt_change_transpiled_back_gives_the_local_numbers(
    salt_archive: Path,
) -> None:
    from analysis.archive import scan_archive
    from tests.analysis.test_salt_change import RUN_1, RUN_1_FILE, RUN_2

    other = frozenset({RUN_2[0]})
    plan_bq = build_plan(RUN_1_FILE, "proj.logs.events", dialect="bigquery", other_salt=other)
    back = _back_to_duckdb(plan_bq.sql)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA logs")
    con.execute(
        "CREATE TABLE logs.events (jsonPayload STRUCT("
        + ", ".join(f"{n} {t}" for n, t in PAYLOAD_FIELDS)
        + "))"
    )
    rows = [
        [{n: r["jsonPayload"].get(n) for n, _ in PAYLOAD_FIELDS}] for r in _payloads(salt_archive)
    ]
    con.executemany("INSERT INTO logs.events VALUES (?)", rows)
    cur = con.execute(back.replace('"proj".', ""))
    names = [d[0] for d in cur.description]
    remote = scan_from_rows(plan_bq, [dict(zip(names, r, strict=True)) for r in cur.fetchall()])
    _, local, _ = scan_archive(RUN_1_FILE, salt_archive, other_salt=other)
    assert [p.id for p in remote.phases] == [p.id for p in local.phases] == [RUN_1[0]]
    assert remote.cuts == local.cuts and local.cuts[RUN_1[0]].units > 0
    assert remote.excluded == local.excluded
    assert sorted((lk.variant, lk.day, lk.stats.count) for lk in remote.looks) == sorted(
        (lk.variant, lk.day, lk.stats.count) for lk in local.looks
    )


def vars_of(e: Any) -> dict[str, Any]:
    """A LookEstimate as a plain dict (it has slots, no __dict__)."""
    return {k: getattr(e, k) for k in ("diff", "var_diff", "p_value", "p_value_sequential")}


@needs_emulator
def test_emulator_caps_like_the_local_path(emulator: str, table: str, archive: Path) -> None:
    from analysis.bigquery import BigQuerySource, make_client
    from tests.analysis.test_capping import CAPPED_YAML

    capped = experiment(CAPPED_YAML)
    remote = build_report(capped, BigQuerySource(table, make_client("test", endpoint=emulator)))
    local = build_report(capped, archive)
    _close(_figures(remote), _figures(local))
    assert local.metrics[1].values != build_report(experiment(), archive).metrics[1].values


@needs_emulator
def test_emulator_honours_the_time_window(emulator: str, table: str, archive: Path) -> None:
    from analysis.bigquery import BigQuerySource, make_client

    window = {"since": T0 + timedelta(days=1), "until": T0 + timedelta(days=2, hours=3)}
    remote = build_report(
        experiment(), BigQuerySource(table, make_client("test", endpoint=emulator)), **window
    )
    local = build_report(experiment(), archive, **window)
    _close(_figures(remote), _figures(local))
    assert 0 < sum(v.units for v in local.variants.values()) < 600


def _back_to_duckdb(sql: str) -> str:
    """A BigQuery statement in DuckDB's dialect, to run in DuckDB. DuckDB has no LIMIT in an
    aggregate: ``ARRAY_AGG(v ORDER BY k LIMIT 1)[OFFSET(0)]`` becomes the first element of the
    whole ordered array, the same value."""

    def unlimited(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Limit) and isinstance(node.parent, exp.ArrayAgg):
            return node.this
        return node

    return sqlglot.parse_one(sql, read="bigquery").transform(unlimited).sql(dialect="duckdb")


def test_bigquery_sql_transpiled_back_gives_the_local_numbers(archive: Path) -> None:
    plan_bq = build_plan(
        experiment(), "proj.logs.events", dialect="bigquery", cuped_window=OPTIONS.cuped_window
    )
    back = _back_to_duckdb(plan_bq.sql)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA logs")
    con.execute(
        "CREATE TABLE logs.events (jsonPayload STRUCT("
        + ", ".join(f"{n} {t}" for n, t in PAYLOAD_FIELDS)
        + "))"
    )
    rows = [[{n: r["jsonPayload"].get(n) for n, _ in PAYLOAD_FIELDS}] for r in _payloads(archive)]
    con.executemany("INSERT INTO logs.events VALUES (?)", rows)
    cur = con.execute(back.replace('"proj".', ""))
    names = [d[0] for d in cur.description]
    scan = scan_from_rows(plan_bq, [dict(zip(names, r, strict=True)) for r in cur.fetchall()])
    remote = analyse(
        experiment(),
        plan_bq,
        scan.looks,
        phases=scan.phases,
        excluded=scan.excluded,
        options=OPTIONS,
    )
    local = _figures(build_report(experiment(), archive, options=OPTIONS))
    _close(_figures(remote), {k: v for k, v in local.items() if k != "skipped"})  # looks only


def test_bigquery_sql_uses_only_bigquery_functions() -> None:
    sql = build_plan(
        experiment(), "my-proj.logs.events", dialect="bigquery", cuped_window=timedelta(days=7)
    ).sql
    assert "FROM `my-proj`.`logs`.`events`" in sql
    for bq in (
        "ARRAY_AGG(",  # the smallest (ts, event_id): BigQuery orders no tuple (analysis/sql.py)
        "[OFFSET(0)] AS pick",
        "ANY_VALUE(",
        "COVAR_SAMP(",
        "CAST(jsonPayload.ts AS TIMESTAMP)",
        "FLOAT64",
    ):
        assert bq in sql
    for duck in ("TIMESTAMPTZ", "ARG_MIN", "NULLS LAST", "DOUBLE", "read_json"):
        assert duck not in sql
    # MIN_BY (BigQuery has it) only for the salt check's witness, whose bucket is one value per
    # unit and phase; every other pick is by a total key
    assert sql.count("MIN_BY(") == sql.count("MIN_BY(e.bucket, e.unit_id)") == 1
    sqlglot.parse_one(sql, read="bigquery")


@needs_emulator
def test_emulator_through_the_command_line(
    emulator: str, table: str, archive: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from abgate.cli import app
    from tests.analysis.analysis_testkit import EXPERIMENT_YAML

    config = tmp_path / "home.yaml"
    config.write_text(EXPERIMENT_YAML, encoding="utf-8")
    runner = CliRunner()
    remote = runner.invoke(
        app,
        [
            "report",
            "-c",
            str(config),
            "--bigquery",
            table,
            "--bigquery-endpoint",
            emulator,
            "-f",
            "json",
        ],
    )
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, ["report", "-c", str(config), "-a", str(archive), "-f", "json"])
    a, b = json.loads(remote.stdout), json.loads(local.stdout)
    assert a.pop("skipped")["read"] == b.pop("skipped")["read"] + 2  # the table's duplicates
    _close(a, b)


@needs_emulator
def test_emulator_skips_and_counts_incomplete_rows(emulator: str, archive: Path) -> None:
    from analysis.bigquery import BigQuerySource, make_client

    ts = "2026-11-20T09:30:00.000000Z"
    incomplete = [  # a sink table has no torn line, but a row can lack a required field
        {"timestamp": ts, "jsonPayload": {"type": "exposure", "event_id": "i1", "ts": ts,
         "experiment": "home-recs-demo", "variant": "control"}},
        {"timestamp": ts, "jsonPayload": {"type": "outcome", "event_id": "i2", "ts": ts,
         "unit_id": "u-x", "value": 3.0}},
    ]  # fmt: skip
    table = _load(emulator, archive, "abgate_incomplete", incomplete)
    client = make_client("test", endpoint=emulator)
    remote = build_report(experiment(), BigQuerySource(table, client), OPTIONS)
    assert remote.skipped is not None
    assert (remote.skipped.torn, remote.skipped.incomplete) == (0, 2)
    assert remote.skipped.first == [] and remote.skipped.files == {}
    local = build_report(experiment(), archive, options=OPTIONS)
    figures = {k: v for k, v in _figures(remote).items() if k != "skipped"}
    _close(figures, {k: v for k, v in _figures(local).items() if k != "skipped"})
    with pytest.raises(BigQueryError, match="2 exposure/outcome rows lack a required field"):
        build_report(experiment(), BigQuerySource(table, client), OPTIONS, strict=True)


@needs_emulator
def test_emulator_reads_a_table_created_before_exposures_carried_phases(
    emulator: str, archive: Path
) -> None:
    """A sink table whose schema has no jsonPayload.phase/weights/bucket: the report is the
    local one (one unknown phase, the file's weights), with a warning saying so."""
    from analysis.bigquery import BigQuerySource, make_client

    old = frozenset({"phase", "weights", "bucket"})
    table = _load(emulator, archive, "abgate_before_phases", without=old)
    remote = build_report(
        experiment(), BigQuerySource(table, make_client("test", endpoint=emulator)), OPTIONS
    )
    local = build_report(experiment(), archive, options=OPTIONS)
    assert [p.id for p in remote.phases] == [""]
    assert len(remote.warnings) == 1
    assert "no jsonPayload.phase, weights, bucket" in remote.warnings[0]
    assert "one unknown phase" in remote.warnings[0]
    from analysis.render_html import render_html

    assert "one unknown phase" in render_html(remote)
    figures = _figures(remote)
    assert figures.pop("warnings") == remote.warnings
    _close(figures, _figures(local))


@needs_emulator
def test_emulator_picks_first_exposures_and_copies_by_the_archive_rule(
    emulator: str, tmp_path: Path
) -> None:
    """Exposures tied at one microsecond, copies of one event that differ, a first exposure
    without the --by attribute: BigQuery's ARRAY_AGG(... ORDER BY ... LIMIT 1) picks what the
    rule picks (tests/analysis/test_first_exposure.py), NULLs last as in DuckDB."""
    from analysis.bigquery import BigQuerySource, make_client
    from tests.analysis.test_first_exposure import YAML as TIES_YAML
    from tests.analysis.test_first_exposure import (
        expected,
        figures,
        tied_payloads,
        write_shuffled,
    )

    tied = expected(tied_payloads())
    root = write_shuffled(tied.payloads, tmp_path, order=5)
    table = _load(emulator, root, "abgate_ties", attributes=("platform",))
    source = BigQuerySource(table, make_client("test", endpoint=emulator))
    cohort = source.read(experiment(TIES_YAML), segment="platform")
    assert figures(cohort) == (tied.cells, tied.weights)
