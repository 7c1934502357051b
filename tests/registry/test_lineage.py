"""``abgate registry lineage``: the chain from data to promotion, on a real MLflow registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from abgate.cli import app
from experiments import ModelRef
from tests.registry.registry_testkit import (
    EXPERIMENT_YAML,
    KEY,
    SURFACES_YAML,
    cli_env,
    write_archive,
)

pytest.importorskip("mlflow")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


async def test_lineage_of_a_loaded_and_promoted_version(
    pool: asyncpg.Pool,
    mlflow_registry: tuple[Any, Path],
    experiments_dir: Path,
    pg_dsn: str,
    schema: str,
    tmp_path: Path,
) -> None:
    from batch.predict import predict

    registry, features = mlflow_registry
    env = cli_env(pg_dsn, schema, experiments_dir, registry)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env)

    # Version 1 (@champion) scored by `batch predict`; version 2 loaded by `abgate batch load`.
    await predict(
        pool, registry, ModelRef.parse("models:/home_recs@champion"), features, top_k=5,
        alias="champion",
    )  # fmt: skip
    v1 = registry._client.get_model_version("home_recs", "1")
    registry._client.create_model_version("home_recs", v1.source, run_id=v1.run_id)
    results = tmp_path / "results.csv"
    results.write_text(
        "unit_id,item_id,score\nu1,sku-1,0.9\nu1,sku-2,0.5\n__default__,sku-3,1.0\n",
        encoding="utf-8",
    )
    r = await asyncio.to_thread(
        cli, "batch", "load", str(results), "--model", "home_recs", "--version", "2",
        "--mlflow-tags",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    await pool.execute(
        "INSERT INTO experiment_pins (experiment, variant, model, alias, version)"
        " VALUES ($1, 'control', 'home_recs', 'champion', '1')",
        KEY,
    )
    (experiments_dir / "surfaces.yaml").write_text(SURFACES_YAML, encoding="utf-8")
    (experiments_dir / "home.yaml").write_text(EXPERIMENT_YAML, encoding="utf-8")
    archive = write_archive(
        tmp_path / "archive",
        units={"control": 2000, "treatment": 2000},
        buyers={"control": 200, "treatment": 400},
        latency={"control": 100.0, "treatment": 100.0},
    )
    r = await asyncio.to_thread(
        cli, "registry", "promote", "home_recs", "champion", "2", "-e", KEY, "-a", str(archive),
        "--by", "alice",
    )  # fmt: skip
    assert r.exit_code == 0, r.output

    r = await asyncio.to_thread(cli, "registry", "lineage", "models:/home_recs/2", "-f", "json")
    assert r.exit_code == 0, r.output
    lin = json.loads(r.stdout)
    (ds,) = lin["training_run"]["datasets"]
    assert (ds["name"], ds["context"]) == ("interactions", "training") and ds["digest"]
    assert lin["registered"]["run_id"] == lin["training_run"]["run_id"] == v1.run_id
    (load,) = lin["loads"]
    file_hash = "sha256:" + hashlib.sha256(results.read_bytes()).hexdigest()
    assert load["metadata"]["input_hash"] == file_hash and load["state"] == "active"
    assert load["metadata"]["results_sha256"].startswith("sha256-sum:")
    (served,) = lin["served_by"]
    assert (served["experiment"], served["variant"], served["how"]) == (
        KEY,
        "treatment",
        "names models:/home_recs/2",
    )
    (move,) = lin["promotions"]
    assert (move["alias"], move["previous"], move["version"]) == ("champion", "1", "2")
    assert move["evidence"]["experiment"] == KEY and move["evidence"]["promoted_by"] == "alice"
    assert move["evidence"]["archive_digest"].startswith("sha256-tree:")

    r = await asyncio.to_thread(cli, "registry", "lineage", "models:/home_recs/2")
    assert r.exit_code == 0, r.output
    for text in (
        "training run",
        "dataset interactions (training)",
        f"load {load['load_id']} (active)",
        file_hash,
        f"{KEY} / treatment",
        "@champion 1 -> 2 (set) by alice: experiment home-recs-demo variant treatment",
    ):
        assert text in " ".join(r.stdout.split()), text

    # Version 1: its inference run and the feature table it scored; the control arm pinned to it.
    r = await asyncio.to_thread(cli, "registry", "lineage", "models:/home_recs/1", "-f", "json")
    lin1 = json.loads(r.stdout)
    run_id = lin1["loads"][0]["metadata"]["predict_run_id"]
    (fds,) = lin1["inference_runs"][run_id]["datasets"]
    assert (fds["name"], fds["context"]) == ("features.parquet", "inference")
    assert features.resolve().as_uri() in fds["source"]
    (control,) = lin1["served_by"]
    assert control["how"] == "models:/home_recs@champion pinned to version 1"
