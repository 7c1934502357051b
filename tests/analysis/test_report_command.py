"""``abgate report``: formats, options, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli import app
from tests.analysis.analysis_testkit import EXPERIMENT_YAML, simulate_archive

runner = CliRunner()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_archive(
        tmp_path_factory.mktemp("arch"), units=500, rates={"control": 0.2, "treatment": 0.3}
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "home.yaml"
    p.write_text(EXPERIMENT_YAML, encoding="utf-8")
    return p


def test_json_to_stdout(archive: Path, config: Path) -> None:
    r = runner.invoke(
        app,
        [
            "report",
            "--config",
            str(config),
            "--archive",
            str(archive),
            "--format",
            "json",
            "--alpha",
            "0.1",
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["experiment"] == "home-recs-demo" and d["alpha"] == 0.1
    assert sum(v["units"] for v in d["variants"].values()) == 500


def test_table_shows_every_metric_and_the_options(archive: Path, config: Path) -> None:
    args = [
        "report",
        "-c",
        str(config),
        "-a",
        str(archive),
        "--power",
        "--target-mde",
        "0.05",
        "--sequential",
        "--cuped",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    for text in (
        "conversion",
        "revenue",
        "clicks_per_exposure",
        "SRM check",
        "MDE",
        "p seq",
        "CUPED",
    ):
        assert text in r.stdout


def test_html_to_a_file(archive: Path, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = runner.invoke(
        app, ["report", "-c", str(config), "-a", str(archive), "-f", "html", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("<!doctype html>")


def test_since_until_window(archive: Path, config: Path) -> None:
    args = [
        "report",
        "-c",
        str(config),
        "-a",
        str(archive),
        "-f",
        "json",
        "--since",
        "2026-11-21",
        "--until",
        "2026-11-22T00:00:00Z",
    ]
    d = json.loads(runner.invoke(app, args).stdout)
    whole = json.loads(
        runner.invoke(app, ["report", "-c", str(config), "-a", str(archive), "-f", "json"]).stdout
    )
    units = sum(v["units"] for v in d["variants"].values())
    assert 0 < units < sum(v["units"] for v in whole["variants"].values())


def test_invalid_config_prints_its_issues_and_exits_1(archive: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "key: x\nsurface: s\nvariants:\n  - {key: a, weight: 1, model: 'models:/m/1'}\nbogus: 1\n"
    )
    r = runner.invoke(app, ["report", "-c", str(bad), "-a", str(archive)])
    assert r.exit_code == 1
    assert (
        "bogus" in r.stderr and "is not a known field" in r.stderr and "Traceback" not in r.output
    )


def test_missing_archive_exits_1_with_a_message(config: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["report", "-c", str(config), "-a", str(tmp_path / "nowhere")])
    assert r.exit_code == 1
    assert "not a" in r.stderr and "directory" in r.stderr and "Traceback" not in r.output
    assert isinstance(r.exception, SystemExit)  # a clean exit, not an escaped error


def test_key_form_reads_the_experiments_dir(
    archive: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = config.parent
    (d / "surfaces.yaml").write_text(
        "surfaces:\n  - {name: home_top, default_model: 'models:/home_recs@champion'}\n"
    )
    monkeypatch.setenv("ABGATE_EXPERIMENTS_DIR", str(d))
    r = runner.invoke(app, ["report", "home-recs-demo", "-a", str(archive), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["experiment"] == "home-recs-demo"
    r = runner.invoke(app, ["report", "nope", "-a", str(archive)])
    assert r.exit_code == 1 and "no experiment 'nope'" in r.stderr


def test_bad_bigquery_table_and_bad_dates_are_reported(config: Path) -> None:
    r = runner.invoke(app, ["report", "-c", str(config), "--bigquery", "just-a-table"])
    assert r.exit_code == 1 and "PROJECT.DATASET.TABLE" in r.stderr
    r = runner.invoke(app, ["report", "-c", str(config), "--since", "yesterday"])
    assert r.exit_code == 2 and "ISO date" in r.stderr


def test_table_opens_with_the_verdict_and_its_reason(archive: Path, config: Path) -> None:
    r = runner.invoke(app, ["report", "-c", str(config), "-a", str(archive)])
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    # conversion 0.2 -> 0.3 on 500 units: a clear win on the (implicit) primary metric.
    assert first.startswith("Verdict: SHIP: treatment beats control on conversion")


def test_no_exposures_in_the_window_is_one_line_naming_key_archive_and_window(
    archive: Path, config: Path
) -> None:
    r = runner.invoke(
        app, ["report", "-c", str(config), "-a", str(archive), "--since", "2030-01-01"]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert "no exposures of experiment 'home-recs-demo'" in line
    assert str(archive) in line and "since 2030-01-01T00:00:00+00:00" in line


def test_out_into_a_missing_folder_is_an_error_naming_it(
    archive: Path, config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "no" / "such" / "r.html"
    r = runner.invoke(
        app, ["report", "-c", str(config), "-a", str(archive), "-f", "html", "-o", str(target)]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"folder {target.parent} does not exist" in " ".join(r.stderr.split())
    assert not target.parent.exists()


def test_key_form_reads_the_postgres_experiment_store(
    archive: Path, config: Path, pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ABGATE_EXPERIMENTS_DIR", raising=False)
    env = {"ABGATE_POSTGRES_DSN": pg_dsn, "ABGATE_POSTGRES_SCHEMA": schema, "USER": "tester"}
    surfaces = config.parent / "surfaces.yaml"
    surfaces.write_text(
        "surfaces:\n  - {name: home_top, default_model: 'models:/home_recs@champion'}\n"
    )
    r = runner.invoke(app, ["experiments", "surfaces", "apply", str(surfaces)], env=env)
    assert r.exit_code == 0, r.output
    # a draft: the store lets it in without loaded models, and a report reads any status
    config.write_text(EXPERIMENT_YAML.replace("status: running", "status: draft"))
    r = runner.invoke(app, ["experiments", "apply", str(config)], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "home-recs-demo", "-a", str(archive), "-f", "json"], env=env)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["experiment"] == "home-recs-demo" and d["verdict"]["decision"] == "ship"
    r = runner.invoke(app, ["report", "nope", "-a", str(archive)], env=env)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"no experiment 'nope' in the experiment store (Postgres schema {schema})" in " ".join(
        r.stderr.split()
    )


def test_key_form_with_an_unreachable_store_exits_3_in_one_line(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.delenv("ABGATE_EXPERIMENTS_DIR", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"ABGATE_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{port}/test"}
    r = runner.invoke(app, ["report", "home-recs-demo", "-a", str(archive)], env=env)
    assert r.exit_code == 3 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error cannot read the experiment store (Postgres schema abgate)")


def test_a_ramped_archive_reports_its_phases_holdout_and_segments_in_every_format(
    tmp_path: Path, config: Path
) -> None:
    from tests.analysis.test_phased_report import ramped_archive

    root = ramped_archive(tmp_path / "ramp", n=400, holdout=60)[0]
    base = ["report", "-c", str(config), "-a", str(root), "--by", "platform"]
    table = runner.invoke(app, [*base, "--format", "table"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "Allocation phases" in table.output and "aaaaaaaaaaaa" in table.output
    assert "Against the holdout (60 units)" in table.output
    assert "Segments by platform: exploratory" in table.output
    d = json.loads(runner.invoke(app, [*base, "--format", "json"]).stdout)
    assert [p["id"] for p in d["phases"]] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert d["segments"]["by"] == "platform" and d["segments"]["exploratory"] is True
    assert set(d["segments"]["groups"]) == {"ios", "android"}
    assert d["holdout"]["units"] == 60
    html = tmp_path / "r.html"
    assert runner.invoke(app, [*base, "--format", "html", "-o", str(html)]).exit_code == 0
    page = html.read_text()
    assert "Allocation phases" in page and "Segments by platform" in page and "holdout" in page


def test_a_by_that_is_not_an_attribute_name_is_one_clear_line(archive: Path, config: Path) -> None:
    r = runner.invoke(app, ["report", "-c", str(config), "-a", str(archive), "--by", "a b"])
    assert r.exit_code == 1
    assert "--by 'a b': an attribute name holds letters, digits" in r.output
    assert "Traceback" not in r.output
