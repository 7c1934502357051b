"""``abgate logs verify`` and ``abgate logs tail`` on archives written by the real sink."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from abgate.cli import app
from experiments import Exposure, Outcome, archive_path
from gateway.sinks import ArchiveSink

runner = CliRunner()


def exposure(n: int, hour: str) -> Exposure:
    return Exposure(
        f"e{n}", f"{hour}:0{n % 10}:00.000000Z", "exp", "control", f"u{n}", "home", "m", "1",
        ("a",), 1, "cache", "r", False,
    )  # fmt: skip


def write_archive(root: Path) -> ArchiveSink:
    """Hours 03 and 05 of one day (04 missing): 3 exposures and an outcome, then 2 exposures."""
    sink = ArchiveSink(root, project="p", log_id="abgate-events")
    records = [exposure(i, "2026-01-02T03") for i in range(3)]
    records.append(Outcome("o1", "2026-01-02T03:30:00.000000Z", "u1", "purchase", 2.0, None))
    records += [exposure(i, "2026-01-02T05") for i in range(3, 5)]
    sink.write([sink.encode(r) for r in records])
    return sink


def test_a_clean_archive_verifies_with_counts_per_hour_and_the_gap(tmp_path: Path) -> None:
    write_archive(tmp_path)
    result = runner.invoke(app, ["logs", "verify", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert [(h["hour"], h["lines"], h["exposures"], h["outcomes"]) for h in report["hours"]] == [
        ("2026-01-02T03", 4, 3, 1),
        ("2026-01-02T05", 2, 2, 0),
    ]
    assert report["gaps"] == ["2026-01-02T04"]


def test_torn_and_duplicated_lines_are_counted_and_fail_the_check(tmp_path: Path) -> None:
    sink = write_archive(tmp_path)
    three = archive_path(tmp_path, "abgate-events", "2026-01-02T03")
    five = archive_path(tmp_path, "abgate-events", "2026-01-02T05")
    with three.open("ab") as f:
        f.write(b'{"logName": "half a line\n')  # torn in the middle of the file
        f.write(sink.encode(exposure(1, "2026-01-02T03"))[1] + b"\n")  # a duplicate of e1
    with five.open("ab") as f:
        f.write(sink.encode(exposure(9, "2026-01-02T05"))[1][:50])  # a torn last line
    result = runner.invoke(app, ["logs", "verify", str(tmp_path), "--format", "json"])
    assert result.exit_code == 1
    hours = {h["hour"]: h for h in json.loads(result.output)["hours"]}
    assert (hours["2026-01-02T03"]["torn"], hours["2026-01-02T03"]["duplicates"]) == (1, 1)
    assert (hours["2026-01-02T05"]["torn"], hours["2026-01-02T05"]["lines"]) == (1, 3)
    table = runner.invoke(app, ["logs", "verify", str(tmp_path)])
    assert "2 torn, 1 duplicates" in table.output and table.exit_code == 1


def test_tail_prints_the_newest_records_one_line_each(tmp_path: Path) -> None:
    write_archive(tmp_path)
    result = runner.invoke(app, ["logs", "tail", str(tmp_path), "-n", "1"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "2026-01-02T05:04:00.000000Z exposure exp/control unit=u4 source=cache"
    ]
    raw = runner.invoke(app, ["logs", "tail", str(tmp_path), "--json", "-n", "2"])
    assert [json.loads(line)["insertId"] for line in raw.output.splitlines()] == ["e3", "e4"]


def test_a_missing_archive_is_a_one_line_error(tmp_path: Path) -> None:
    for command in ("verify", "tail"):
        result = runner.invoke(app, ["logs", command, str(tmp_path / "nowhere")])
        assert result.exit_code == 1
        assert "is not a folder" in result.output and "Traceback" not in result.output
