"""Malformed archive lines: skipped, counted and located, or ``--strict`` fails on the first.

Each test writes a clean archive, reports on it, then puts bad lines into the middle of its
files (torn lines, non-objects, records missing a field or with a ``ts`` that is no time) and
checks that the report on the damaged archive has the same figures, with the right counts and
locations, and says so next to the verdict.
"""

from __future__ import annotations

import json
import re
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from abgate.cli import app
from analysis import build_report, render_html, render_table
from analysis.errors import MalformedArchive
from tests.analysis.analysis_testkit import EXPERIMENT_YAML, experiment, simulate_archive

GOOD_EXPOSURE = {
    "type": "exposure", "event_id": "bad-x", "ts": "2026-11-20T09:00:00.000000Z",
    "experiment": "home-recs-demo", "variant": "control", "unit_id": "u-bad",
}  # fmt: skip
GOOD_OUTCOME = {
    "type": "outcome", "event_id": "bad-o", "ts": "2026-11-20T09:30:00.000000Z",
    "unit_id": "u-bad", "name": "purchase", "value": 1.0,
}  # fmt: skip


def _entry(payload: dict[str, Any]) -> str:
    return json.dumps({"logName": "projects/test/logs/abgate-events", "jsonPayload": payload})


def _without(payload: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != field}


# (line, kind: torn | incomplete); each damages a record the report would otherwise read
BAD_LINES: list[tuple[str, str]] = [
    (_entry(GOOD_EXPOSURE)[:57], "torn"),  # a write cut short
    ("[1, 2, 3]", "torn"),  # JSON, not an object
    ("42", "torn"),
    ('{"severity": "INFO"}', "torn"),  # an object, but no log entry
    (_entry(_without(GOOD_EXPOSURE, "unit_id")), "incomplete"),
    (_entry(_without(GOOD_EXPOSURE, "variant")), "incomplete"),
    (_entry(GOOD_EXPOSURE | {"event_id": None}), "incomplete"),
    (_entry(GOOD_EXPOSURE | {"ts": "yesterday"}), "incomplete"),
    (_entry(GOOD_OUTCOME | {"ts": 1732000000}), "incomplete"),
    (_entry(_without(GOOD_OUTCOME, "name")), "incomplete"),
]
# lines that are not malformed: other log entries and records of other types
HARMLESS = [
    json.dumps({"logName": "projects/p/logs/stderr", "textPayload": "a traceback"}),
    json.dumps({"jsonPayload": {"message": "gateway started", "severity": "INFO"}}),
    "",  # an empty line
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_archive(
        tmp_path_factory.mktemp("clean"), units=400, rates={"control": 0.2, "treatment": 0.3}
    )


def _flat(x: Any, path: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _flat(val, f"{path}.{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in _flat(val, f"{path}[{i}]").items()}
    return {path: x}


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """Every figure but ``skipped``; floats to 1e-9 (DuckDB's parallel sums vary in the last
    bits from run to run, even on the same archive)."""
    flat = _flat({k: v for k, v in report.items() if k != "skipped"})
    return {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in flat.items()}


def _damage(clean: Path, target: Path, lines: list[str], every: int = 7) -> list[tuple[str, int]]:
    """Copy ``clean`` to ``target`` and insert ``lines`` in turn into the middle of its files,
    one per file, round robin; return (file, 1-based line number) of each inserted line."""
    shutil.copytree(clean, target)
    files = sorted(target.rglob("*.json"))
    where: list[tuple[str, int]] = []
    contents = {f: f.read_text(encoding="utf-8").splitlines() for f in files}
    for i, line in enumerate(lines):
        f = files[(i * every) % len(files)]
        rows = contents[f]
        at = len(rows) // 2
        rows.insert(at, line)
        where.append((str(f), at + 1))
    for f, rows in contents.items():
        f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    # positions shift when a later insert lands above an earlier one in the same file
    final = []
    for f in files:
        numbered = {n: text for n, text in enumerate(contents[f], start=1)}
        final += [(str(f), n) for n, text in numbered.items() if text in lines]
    assert len(final) == len(where)
    return sorted(final)


def test_bad_lines_are_skipped_counted_and_located_and_the_figures_do_not_move(
    clean: Path, tmp_path: Path
) -> None:
    bad = [line for line, _ in BAD_LINES]
    where = _damage(clean, tmp_path / "damaged", bad + HARMLESS)
    before = build_report(experiment(), clean)
    after = build_report(experiment(), tmp_path / "damaged")

    assert _flat({k: v for k, v in after.to_dict().items() if k != "skipped"}) == _figures(
        before.to_dict()
    )
    s = after.skipped
    assert s is not None
    assert (s.torn, s.incomplete) == (4, 6)
    assert s.lines == 10 and s.read == before.skipped.read + 10  # type: ignore[union-attr]
    bad_places = [w for w in where if _line_at(*w) in bad]
    assert sum(s.files.values()) == 10 and set(s.files) == {f for f, _ in bad_places}
    assert [(x.file, x.line) for x in s.first] == bad_places[:5]  # file then line order
    assert all(x.reason for x in s.first)
    d = after.to_dict()["skipped"]
    assert d["lines"] == 10 and d["torn"] == 4 and d["incomplete"] == 6
    assert d["first"][0] == {
        "file": s.first[0].file,
        "line": s.first[0].line,
        "reason": s.first[0].reason,
    }
    assert before.to_dict()["skipped"] == {
        "lines": 0,
        "torn": 0,
        "incomplete": 0,
        "read": before.skipped.read,  # type: ignore[union-attr]
        "share": 0.0,
        "files": {},
        "first": [],
    }


def _line_at(file: str, number: int) -> str:
    return Path(file).read_text(encoding="utf-8").splitlines()[number - 1]


@pytest.mark.parametrize(("line", "kind"), BAD_LINES)
def test_each_kind_of_bad_line_is_named_with_its_reason(
    clean: Path, tmp_path: Path, line: str, kind: str
) -> None:
    [(file, number)] = _damage(clean, tmp_path / "one", [line])
    rep = build_report(experiment(), tmp_path / "one")
    assert rep.skipped is not None
    assert (rep.skipped.torn, rep.skipped.incomplete) == ((1, 0) if kind == "torn" else (0, 1))
    [first] = rep.skipped.first
    assert (first.file, first.line) == (file, number)
    expected = {
        "torn": r"not valid JSON|not a JSON object|not a log entry",
        "incomplete": r"record without|is not a time",
    }[kind]
    assert re.search(expected, first.reason)


def test_a_torn_last_line_without_newline_is_skipped(clean: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "tail"
    shutil.copytree(clean, damaged)
    last = sorted(damaged.rglob("*.json"))[-1]
    n = len(last.read_text(encoding="utf-8").splitlines())
    with last.open("a", encoding="utf-8") as f:
        f.write(_entry(GOOD_OUTCOME)[:40])  # the crash: no newline
    rep = build_report(experiment(), damaged)
    assert rep.skipped is not None and rep.skipped.torn == 1
    assert [(x.file, x.line) for x in rep.skipped.first] == [(str(last), n + 1)]
    assert _figures(build_report(experiment(), clean).to_dict()) == _flat(
        {k: v for k, v in rep.to_dict().items() if k != "skipped"}
    )


def test_strict_fails_naming_the_first_file_and_line(clean: Path, tmp_path: Path) -> None:
    where = _damage(clean, tmp_path / "strict", [BAD_LINES[0][0], BAD_LINES[4][0]])
    file, line = where[0]
    with pytest.raises(MalformedArchive, match=rf"{re.escape(file)} line {line}: .*2 malformed"):
        build_report(experiment(), tmp_path / "strict", strict=True)
    build_report(experiment(), clean, strict=True)  # a clean archive passes


def test_the_warning_stands_next_to_the_verdict_in_table_and_html(
    clean: Path, tmp_path: Path
) -> None:
    _damage(clean, tmp_path / "warn", [BAD_LINES[0][0]])
    rep = build_report(experiment(), tmp_path / "warn")
    out = StringIO()
    render_table(rep, Console(file=out, width=300))
    first_lines = out.getvalue().splitlines()[:2]
    assert first_lines[0].startswith("Verdict:")
    assert first_lines[1].startswith("Warning: 1 of ") and "skipped as malformed" in first_lines[1]
    html = render_html(rep)
    assert html.index('id="verdict"') < html.index('id="skipped"') < html.index("<h2>Summary")
    clean_out = StringIO()
    render_table(build_report(experiment(), clean), Console(file=clean_out, width=300))
    assert "Warning" not in clean_out.getvalue()
    assert 'id="skipped"' not in render_html(build_report(experiment(), clean))


def test_more_than_one_percent_skipped_makes_the_verdict_invalid(
    clean: Path, tmp_path: Path
) -> None:
    read = build_report(experiment(), clean).skipped.read  # type: ignore[union-attr]
    few = read // 200  # 0.5%: a warning, the verdict stands
    many = read // 50  # 2%: invalid
    _damage(clean, tmp_path / "few", [BAD_LINES[0][0] + str(i) for i in range(few)], every=1)
    _damage(clean, tmp_path / "many", [BAD_LINES[0][0] + str(i) for i in range(many)], every=1)
    assert build_report(experiment(), tmp_path / "few").verdict.decision != "invalid"  # type: ignore[union-attr]
    verdict = build_report(experiment(), tmp_path / "many").verdict
    assert verdict is not None and verdict.decision == "invalid"
    assert "malformed" in verdict.reason and "abgate logs verify" in verdict.reason


runner = CliRunner()


def test_cli_skips_by_default_and_strict_exits_1_naming_file_and_line(
    clean: Path, tmp_path: Path
) -> None:
    [(file, line)] = _damage(clean, tmp_path / "cli", [BAD_LINES[1][0]])
    config = tmp_path / "home.yaml"
    config.write_text(EXPERIMENT_YAML, encoding="utf-8")
    args = ["report", "-c", str(config), "-a", str(tmp_path / "cli")]
    r = runner.invoke(app, [*args, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["skipped"]["first"] == [
        {"file": file, "line": line, "reason": "not a JSON object but list"}
    ]
    r = runner.invoke(app, [*args, "--strict"])
    assert r.exit_code == 1
    assert f"{file} line {line}: not a JSON object" in r.stderr
    assert "Traceback" not in r.output
