"""``abgate experiments ...`` against real Postgres: apply, lifecycle, history, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli import app
from experiments.store import create_pool
from tests.experiments.helpers import SURFACES

EXP = """key: exp
surface: home_top
variants:
  - {key: control, weight: 50, model: "models:/home_recs/1"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
"""


def _setup_models(dsn: str, schema: str) -> None:
    async def go() -> None:
        pool = await create_pool(dsn, schema, min_size=1, max_size=1)
        try:
            for v in ("1", "7"):
                await pool.execute(
                    "INSERT INTO model_versions (model, version, default_items)"
                    " VALUES ('home_recs', $1, '[{\"id\": \"a\"}]')",
                    v,
                )
        finally:
            await pool.close()

    asyncio.run(go())


@pytest.fixture
def cli(pg_dsn: str, schema: str, tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    _setup_models(pg_dsn, schema)
    (tmp_path / "surfaces.yaml").write_text(SURFACES)
    (tmp_path / "exp.yaml").write_text(EXP)
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "USER": "tester",
        "COLUMNS": "200",
    }
    return CliRunner(), env


def _ok(cli: tuple[CliRunner, dict[str, str]], *args: str, code: int = 0) -> str:
    runner, env = cli
    result = runner.invoke(app, ["experiments", *args], env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_apply_lifecycle_and_history(cli: tuple[CliRunner, dict[str, str]], tmp_path: Path) -> None:
    out = _ok(
        cli,
        "apply",
        str(tmp_path / "surfaces.yaml"),
        str(tmp_path / "exp.yaml"),
        "--reason",
        "first",
    )
    assert "create" in out and "home_top" in out
    assert "unchanged" in _ok(cli, "apply", str(tmp_path / "exp.yaml"))
    _ok(cli, "start", "exp", "--reason", "go")
    (tmp_path / "exp.yaml").write_text(
        EXP.replace(
            'weight: 50, model: "models:/home_recs/1', 'weight: 80, model: "models:/home_recs/1'
        )
    )
    assert "weight: 80" in _ok(cli, "diff", "exp", str(tmp_path / "exp.yaml"))
    _ok(cli, "apply", str(tmp_path / "exp.yaml"), "-m", "ramp")
    _ok(cli, "pause", "exp")
    _ok(cli, "resume", "exp")
    assert "stopped" in _ok(cli, "stop", "exp", "--winner", "treatment", "--reason", "won")
    history = _ok(cli, "history", "exp")
    for word in ("create", "start", "apply", "pause", "resume", "stop", "tester", "ramp", "won"):
        assert word in history
    assert "weight: 50" in _ok(cli, "show", "exp", "--version", "1")
    assert "winner: treatment" in _ok(cli, "show", "exp")
    assert "-status: running" in _ok(cli, "diff", "exp")
    assert "exp" in _ok(cli, "list")
    [listed] = json.loads(_ok(cli, "list", "--json"))
    assert listed["key"] == "exp" and listed["status"] == "stopped"
    assert listed["winner"] == "treatment" and listed["surface"] == "home_top"
    assert listed["variants"] == [
        {"key": "control", "weight": 80, "model": "models:/home_recs/1"},
        {"key": "treatment", "weight": 50, "model": "models:/home_recs/7"},
    ]
    assert listed["version"] == 6 and listed["by"] == "tester"
    _ok(cli, "archive", "exp")
    assert json.loads(_ok(cli, "list", "--json")) == []
    assert [e["status"] for e in json.loads(_ok(cli, "list", "--json", "--all"))] == ["archived"]


def test_refusals_and_errors_exit_one_without_traceback(
    cli: tuple[CliRunner, dict[str, str]], tmp_path: Path
) -> None:
    _ok(cli, "apply", str(tmp_path / "surfaces.yaml"), str(tmp_path / "exp.yaml"))
    out = _ok(cli, "pause", "exp", code=1)
    assert "is draft: cannot pause" in out and "Traceback" not in out
    (tmp_path / "bad.yaml").write_text(EXP + "targeting: country = 'JP'\n")
    out = _ok(cli, "apply", str(tmp_path / "bad.yaml"), code=1)
    assert "bad.yaml:6: field 'targeting' column 9" in out
    out = _ok(cli, "show", "nope", code=1)
    assert "'nope' does not exist" in out
    _ok(cli, "start", "exp")
    (tmp_path / "salted.yaml").write_text(EXP + "salt: new\n")
    out = _ok(cli, "apply", str(tmp_path / "salted.yaml"), code=1)
    assert "use --force with --reason" in out
    assert "dry run" in _ok(
        cli, "apply", str(tmp_path / "salted.yaml"), "--force", "-m", "fix", "--dry-run"
    )


def test_unreachable_store_exits_three(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXP)
    env = {
        "ABGATE_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:1/x",
        "ABGATE_POSTGRES_SCHEMA": "x",
    }
    result = CliRunner().invoke(app, ["experiments", "list"], env=env)
    assert result.exit_code == 3, result.output
    assert "cannot reach Postgres" in result.output


def _move_alias(dsn: str, schema: str, version: str) -> None:
    async def go() -> None:
        pool = await create_pool(dsn, schema, min_size=1, max_size=1)
        try:
            await pool.execute(
                "INSERT INTO model_aliases (model, alias, version) VALUES ('home_recs', 'champion', $1)"
                " ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version",
                version,
            )
        finally:
            await pool.close()

    asyncio.run(go())


def test_start_pins_alias_arms_and_repin_is_the_audited_way_to_move_them(
    cli: tuple[CliRunner, dict[str, str]], tmp_path: Path, pg_dsn: str, schema: str
) -> None:
    _move_alias(pg_dsn, schema, "1")
    (tmp_path / "exp.yaml").write_text(
        EXP.replace("models:/home_recs/1", "models:/home_recs@champion")
    )
    _ok(cli, "apply", str(tmp_path / "surfaces.yaml"), str(tmp_path / "exp.yaml"))
    started = _ok(cli, "start", "exp")
    assert "control pinned to models:/home_recs/1 (@champion)" in started
    _move_alias(pg_dsn, schema, "7")  # a promotion while the experiment runs
    shown = _ok(cli, "show", "exp")
    assert "# pinned: control serves models:/home_recs/1" in shown
    missing = _ok(cli, "repin", "exp", code=2)
    assert "--reason" in missing
    moved = _ok(cli, "repin", "exp", "--reason", "v1 retired", "--author", "ana")
    assert "control: models:/home_recs/1 → models:/home_recs/7" in moved
    assert "v1 retired" in moved
    assert "already on its alias's version" in _ok(cli, "repin", "exp", "--reason", "again")
    assert "has no variant 'nope'" in _ok(
        cli, "repin", "exp", "--variant", "nope", "--reason", "x", code=1
    )
