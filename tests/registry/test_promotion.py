"""``abgate registry promote --experiment``: refused unless the variant ships, evidence recorded.

Real Postgres (the test's schema), a real sqlite MLflow registry, archives written in the
gateway's export layout with known results.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from abgate.cli import app
from tests.registry.registry_testkit import (
    EXPERIMENT_YAML,
    KEY,
    SURFACES_YAML,
    cli_env,
    load_version,
    write_archive,
)

pytest.importorskip("mlflow")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

runner = CliRunner()
N = 2000
WIN = {"units": {"control": N, "treatment": N}, "buyers": {"control": 200, "treatment": 400}}
OK_LATENCY = {"control": 100.0, "treatment": 100.0}


@pytest.fixture
async def world(
    pool: asyncpg.Pool,
    mlflow_registry: tuple[Any, Path],
    experiments_dir: Path,
    pg_dsn: str,
    schema: str,
) -> AsyncIterator[dict[str, Any]]:
    """home_recs 1 (@champion) and 2 loaded and active; the experiment running on them, its
    control pinned to version 1; MLflow's champion at 1 and version 2 without promotion tags."""
    registry, _ = mlflow_registry
    client = registry._client
    if len(client.search_model_versions("name='home_recs'")) < 2:
        v1 = client.get_model_version("home_recs", "1")
        client.create_model_version("home_recs", v1.source, run_id=v1.run_id)
    client.set_registered_model_alias("home_recs", "champion", "1")
    for k in client.get_model_version("home_recs", "2").tags:
        if k.startswith("abgate.promotion."):
            client.delete_model_version_tag("home_recs", "2", k)
    await load_version(pool, "1", "a")
    await load_version(pool, "2", "b")
    from registry import set_alias

    await set_alias(pool, "home_recs", "champion", "1")
    await pool.execute(
        "INSERT INTO experiment_pins (experiment, variant, model, alias, version)"
        " VALUES ($1, 'control', 'home_recs', 'champion', '1')",
        KEY,
    )
    (experiments_dir / "surfaces.yaml").write_text(SURFACES_YAML, encoding="utf-8")
    (experiments_dir / "home.yaml").write_text(EXPERIMENT_YAML, encoding="utf-8")
    yield {"registry": registry, "env": cli_env(pg_dsn, schema, experiments_dir, registry)}


async def invoke(world: dict[str, Any], args: list[str]) -> Any:
    """Run the CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(runner.invoke, app, args, env=world["env"])


async def promote(world: dict[str, Any], archive: Path, *extra: str) -> Any:
    args = ["registry", "promote", "home_recs", "champion", "2", "--experiment", KEY]
    return await invoke(world, [*args, "--archive", str(archive), *extra])


async def assert_not_promoted(world: dict[str, Any], pool: asyncpg.Pool) -> None:
    client = world["registry"]._client
    assert str(client.get_model_version_by_alias("home_recs", "champion").version) == "1"
    assert not [k for k in client.get_model_version("home_recs", "2").tags if "promotion" in k]
    version = await pool.fetchval("SELECT version FROM model_aliases WHERE alias = 'champion'")
    assert version == "1"


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        (
            "srm",
            {
                "units": {"control": N, "treatment": 1700},
                "buyers": {"control": 200, "treatment": 400},
            },
            "verdict invalid: sample ratio mismatch",
        ),
        (
            "losing",
            {"units": {"control": N, "treatment": N}, "buyers": {"control": 200, "treatment": 120}},
            "verdict do_not_ship: treatment is significantly worse than control on conversion",
        ),
        (
            "inconclusive",
            {"units": {"control": N, "treatment": N}, "buyers": {"control": 200, "treatment": 210}},
            "verdict keep_running: conversion is inconclusive for treatment",
        ),
    ],
)
async def test_promotion_is_refused_unless_the_primary_wins_without_srm(
    world: dict[str, Any],
    pool: asyncpg.Pool,
    tmp_path: Path,
    case: str,
    data: dict[str, dict[str, int]],
    reason: str,
) -> None:
    archive = write_archive(tmp_path / case, latency=OK_LATENCY, **data)
    r = await promote(world, archive)
    assert r.exit_code == 1, r.output
    assert f"refused models:/home_recs/2 -> @champion: {reason}" in r.output
    assert "(override: --force --reason TEXT)" in r.output
    assert "Traceback" not in r.output
    await assert_not_promoted(world, pool)


async def test_a_breached_guardrail_refuses_a_winning_variant(
    world: dict[str, Any], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    archive = write_archive(tmp_path / "a", latency={"control": 100.0, "treatment": 130.0}, **WIN)
    r = await promote(world, archive)
    assert r.exit_code == 1, r.output
    assert "verdict do_not_ship: guardrail latency is breached by treatment" in r.output
    await assert_not_promoted(world, pool)


def tree_digest(root: Path) -> str:
    """The documented archive digest, computed here from the files themselves."""
    lines = []
    for f in sorted(root.rglob("*.json")):
        data = f.read_bytes()
        rel = f.relative_to(root).as_posix()
        lines.append(f"{rel}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n")
    return "sha256-tree:" + hashlib.sha256("".join(lines).encode()).hexdigest()


async def test_a_clear_win_promotes_and_writes_the_evidence(
    world: dict[str, Any], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from scipy import stats

    from experiments import ModelRef

    archive = write_archive(tmp_path / "a", latency=OK_LATENCY, **WIN)
    r = await promote(world, archive, "--by", "alice")
    assert r.exit_code == 0, r.output
    assert "promoted models:/home_recs@champion -> 2" in r.output
    # The running experiment's control uses the alias and stays on its pinned version.
    assert f"running experiment '{KEY}' variant 'control'" in r.output
    assert "stays pinned to version 1" in r.output

    registry = world["registry"]
    client = registry._client
    assert str(client.get_model_version_by_alias("home_recs", "champion").version) == "2"
    tags = (await registry.resolve(ModelRef.parse("models:/home_recs/2"))).tags
    p = "abgate.promotion."
    assert tags[p + "experiment"] == KEY and tags[p + "variant"] == "treatment"
    assert tags[p + "metric"] == "conversion" and tags[p + "decision"] == "ship"
    # Independent figures: 20% against 10% of 2,000 units each.
    assert float(tags[p + "lift"]) == pytest.approx(1.0)
    lo, hi = json.loads(tags[p + "lift_ci"])
    assert lo < 1.0 < hi and lo > 0
    welch = stats.ttest_ind([1] * 400 + [0] * 1600, [1] * 200 + [0] * 1800, equal_var=False)
    assert float(tags[p + "p_value"]) == pytest.approx(welch.pvalue, rel=1e-6)
    assert (tags[p + "units.control"], tags[p + "units.treatment"]) == ("2000", "2000")
    assert tags[p + "guardrail.latency"] == "ok"
    assert tags[p + "archive_digest"] == tree_digest(archive)
    assert tags[p + "archive_files"] == str(len(list(archive.rglob("*.json"))))
    assert tags[p + "config_version"] == "1" and tags[p + "config_sha256"].startswith("sha256:")
    assert (tags[p + "promoted_by"], tags[p + "forced"], tags[p + "alias"]) == (
        "alice",
        "false",
        "champion",
    )
    assert tags[p + "first_exposure_day"] == "2026-11-20"
    assert tags[p + "report_at"].endswith("Z") and p + "force_reason" not in tags
    row = await pool.fetchrow(
        "SELECT version, previous, action, evidence::text FROM model_alias_history"
        " WHERE alias = 'champion' ORDER BY id DESC LIMIT 1"
    )
    assert (row["version"], row["previous"], row["action"]) == ("2", "1", "set")
    evidence = json.loads(row["evidence"])
    assert evidence["archive_digest"] == tags[p + "archive_digest"]
    assert evidence["units"] == {"control": 2000, "treatment": 2000}


async def test_force_with_a_reason_overrides_a_refusal_and_is_recorded(
    world: dict[str, Any], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from experiments import ModelRef

    data = {"units": {"control": N, "treatment": N}, "buyers": {"control": 200, "treatment": 120}}
    archive = write_archive(tmp_path / "a", latency=OK_LATENCY, **data)
    r = await promote(world, archive, "--force")
    assert r.exit_code == 2 and "--force needs --reason" in r.output
    r = await promote(world, archive, "--force", "--reason", "legal requires the new model")
    assert r.exit_code == 0, r.output
    assert "forced over: verdict do_not_ship" in r.output
    tags = (await world["registry"].resolve(ModelRef.parse("models:/home_recs/2"))).tags
    p = "abgate.promotion."
    assert (tags[p + "forced"], tags[p + "decision"]) == ("true", "do_not_ship")
    assert tags[p + "force_reason"] == "legal requires the new model"
    assert tags[p + "promoted_by"] == "tester"
    evidence = json.loads(
        await pool.fetchval(
            "SELECT evidence::text FROM model_alias_history ORDER BY id DESC LIMIT 1"
        )
    )
    assert evidence["forced"] is True and evidence["force_reason"] == "legal requires the new model"

    # A later promotion with evidence replaces the whole set: no stale force_reason is left.
    win = write_archive(tmp_path / "b", latency=OK_LATENCY, **WIN)
    r = await promote(world, win)
    assert r.exit_code == 0, r.output
    tags = (await world["registry"].resolve(ModelRef.parse("models:/home_recs/2"))).tags
    assert tags[p + "forced"] == "false" and p + "force_reason" not in tags
    moves = await pool.fetch(
        "SELECT action, (evidence->>'forced')::bool AS forced FROM model_alias_history"
        " WHERE alias = 'champion' ORDER BY id"
    )
    # The alias already pointed at 2: the second promotion is evidence, not a move.
    assert [(m["action"], m["forced"]) for m in moves][-2:] == [("set", True), ("evidence", False)]


async def test_without_an_experiment_promote_warns_that_no_evidence_was_checked(
    world: dict[str, Any], pool: asyncpg.Pool
) -> None:
    r = await invoke(world, ["registry", "promote", "home_recs", "champion", "2"])
    assert r.exit_code == 0, r.output
    assert "no evidence was checked" in r.output
    assert "stays pinned to version 1" in r.output
    assert await pool.fetchval("SELECT version FROM model_aliases") is not None


async def test_a_variant_that_does_not_serve_the_version_is_refused(
    world: dict[str, Any], tmp_path: Path
) -> None:
    archive = write_archive(tmp_path / "a", latency=OK_LATENCY, **WIN)
    args = ["registry", "promote", "home_recs", "champion", "1", "--experiment", KEY]
    r = await invoke(world, [*args, "--archive", str(archive)])
    assert r.exit_code == 1
    assert "only the control 'control' of 'home-recs-demo' serves models:/home_recs/1" in r.output
    r = await invoke(world, [*args, "--archive", str(archive), "--variant", "control"])
    assert r.exit_code == 1 and "'control' is the control of 'home-recs-demo'" in r.output
    r = await invoke(world, [*args[:-1], "nope", "--archive", str(archive)])
    assert r.exit_code == 1 and "experiment 'nope'" in r.output
