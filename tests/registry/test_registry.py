"""MLflow registry access and batch inference, against a real sqlite MLflow registry.

MLflow and SQLAlchemy emit deprecation and type-hint warnings of their own on import and on
logging; they are not ours to fix, so this module (only) ignores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from experiments import ModelRef, ModelVersion

pytest.importorskip("mlflow")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


async def test_resolve_follows_the_alias(mlflow_registry: tuple[Any, Path]) -> None:
    from registry import RegistryUnavailable

    registry, _ = mlflow_registry
    rv = await registry.resolve(ModelRef.parse("models:/home_recs@champion"))
    assert rv.version == ModelVersion("home_recs", "1") and rv.run_id
    with pytest.raises(RegistryUnavailable, match="models:/home_recs@nobody"):
        await registry.resolve(ModelRef.parse("models:/home_recs@nobody"))


async def test_predict_loads_the_resolved_version_with_lineage_everywhere(
    pool: asyncpg.Pool, mlflow_registry: tuple[Any, Path]
) -> None:
    from batch.predict import predict

    registry, features = mlflow_registry
    rv, summary = await predict(
        pool,
        registry,
        ModelRef.parse("models:/home_recs@champion"),
        features,
        top_k=7,
        chunk_rows=64,
        alias="champion",
    )
    assert (summary.model, summary.version, summary.units, summary.default_items) == (
        "home_recs",
        "1",
        300,
        7,
    )
    model = await registry.load_pyfunc(rv.version)
    import pandas as pd

    row = pd.read_parquet(features).head(1)
    expected = model.predict(row, params={"top_k": 7})
    stored = orjson.loads(
        await pool.fetchval("SELECT items::text FROM results WHERE unit_id = $1", row["unit_id"][0])
    )
    assert [i["id"] for i in stored] == list(expected["item_ids"][0])
    meta = orjson.loads(await pool.fetchval("SELECT metadata::text FROM model_versions"))
    assert meta["input_hash"].startswith("sha256:") and meta["input_rows"] == 300
    assert (
        meta["mlflow"]["run_id"] == rv.run_id and meta["model_uri"] == "models:/home_recs@champion"
    )
    tags = (await registry.resolve(ModelRef.parse("models:/home_recs/1"))).tags
    assert tags["abgate.results.input_hash"] == meta["input_hash"]
    assert tags["abgate.results.units"] == "300"
    # The inference run has the feature file as its input dataset (mlflow.data).
    run = await registry.run(meta["predict_run_id"])
    assert run.status == "FINISHED" and run.params["top_k_requested"] == "7"
    (ds,) = run.datasets
    assert ds.context == "inference" and ds.name == "features.parquet"
    assert ds.tags["abgate.sha256"] == meta["input_hash"]
    assert meta["input_hash"].removeprefix("sha256:").startswith(ds.digest)
    assert features.resolve().as_uri() in ds.source
    assert tags["abgate.results.predict_run_id"] == run.run_id
    # Chunking does not change the results: the same prediction in other chunks is a no-op.
    _, again = await predict(
        pool, registry, ModelRef.parse("models:/home_recs/1"), features, top_k=7, chunk_rows=1000
    )
    assert again.unchanged


async def test_top_k_is_the_list_length_produced_not_the_argument(
    pool: asyncpg.Pool, mlflow_registry: tuple[Any, Path]
) -> None:
    from batch.predict import predict

    registry, features = mlflow_registry
    # The example model knows 120 items and never recommends a unit's own history, so asking
    # for 1000 yields lists of at most 120.
    await predict(
        pool, registry, ModelRef.parse("models:/home_recs/1"), features, top_k=1000, replace=True
    )
    longest = await pool.fetchval(
        "SELECT greatest((SELECT max(json_array_length(items::json)) FROM results),"
        " (SELECT jsonb_array_length(default_items) FROM model_versions))"
    )
    assert 100 < longest <= 120
    meta = orjson.loads(await pool.fetchval("SELECT metadata::text FROM model_versions"))
    assert (meta["top_k"], meta["top_k_requested"]) == (longest, 1000)
    tags = (await registry.resolve(ModelRef.parse("models:/home_recs/1"))).tags
    assert tags["abgate.results.top_k"] == str(longest)
    assert tags["abgate.results.top_k_requested"] == "1000"
    run = await registry.run(meta["predict_run_id"])
    assert run.tags["abgate.top_k"] == str(longest)


async def test_sync_copies_mlflow_aliases_onto_active_versions_only(
    pool: asyncpg.Pool, mlflow_registry: tuple[Any, Path]
) -> None:
    from batch import load_results
    from registry import AliasError, promote, sync_aliases

    registry, _ = mlflow_registry
    client = registry._client
    v1 = client.get_model_version("home_recs", "1")
    v2 = client.create_model_version("home_recs", v1.source, run_id=v1.run_id)
    version2 = str(v2.version)
    client.set_registered_model_alias("home_recs", "challenger", version2)
    rows = [("u1", [{"id": "a", "score": 1.0}]), ("__default__", [{"id": "b", "score": 1.0}])]
    await load_results(pool, iter(rows), "home_recs", "1")
    report = await sync_aliases(pool, registry, "home_recs")
    assert report.moved == ["models:/home_recs@champion -> 1"]
    assert report.skipped == [
        f"models:/home_recs@challenger -> {version2}: version {version2} has no active results in abgate"
    ]
    with pytest.raises(AliasError, match="has no active results"):
        await promote(pool, registry, "home_recs", "champion", version2)
    await promote(pool, registry, "home_recs", "stable", "1")
    assert (await registry.aliases("home_recs"))["stable"] == "1"
