"""Spark: the partitioning rule, and one local run of the example model through spark_udf
(``make test`` installs pyspark; skipped where pyspark or a Java runtime is missing)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch import load_results, open_input
from batch.spark import partition_count


@pytest.mark.parametrize(
    ("rows", "cores", "expected"),
    [
        (0, 8, 1),
        (10, 8, 8),
        (3, 8, 3),
        (1_000_000, 8, 24),
        (1_000_000, 2, 20),
        (10**10, 64, 20_000),
    ],
)
def test_partition_count_examples(rows: int, cores: int, expected: int) -> None:
    assert partition_count(rows, cores=cores) == expected


@given(st.integers(1, 10**9), st.integers(1, 512))
def test_partitions_bound_memory_and_fill_every_core(rows: int, cores: int) -> None:
    n = partition_count(rows, cores=cores)
    assert 1 <= n <= min(rows, 20_000)
    if n < 20_000 and n < rows:
        assert rows / n <= 50_000  # no task scores more than rows_per_partition rows
        assert n % cores == 0  # the last wave keeps every core busy


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark session (two cores) whose Python workers run this interpreter."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'abgate[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark (apt-get install -y default-jre-headless)")
    from pyspark.sql import SparkSession

    before = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("abgate-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()
        if before is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = before


@pytest.mark.slow
# mlflow (logging the model) and pyspark (pandas 3) warn; ignored as tests/registry does
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
async def test_spark_predictions_load_and_match_the_model_run_locally(
    spark: Any, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from batch.example_model import (
        CoOccurrenceRecommender,
        features_of,
        log_example_model,
        synthetic_interactions,
    )
    from batch.spark import spark_predict

    monkeypatch.chdir(tmp_path)  # mlflow writes artifacts to ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    inter = synthetic_interactions(units=300, items=120, seed=2)
    mv = log_example_model("home_recs", inter)
    features = features_of(inter)
    pq.write_table(pa.Table.from_pandas(features, preserve_index=False), tmp_path / "f.parquet")
    out = tmp_path / "out"
    rows = spark_predict(
        spark, str(tmp_path / "f.parquet"), f"models:/home_recs/{mv.version}", 10, str(out)
    )
    assert rows == 301  # the units and __default__
    summary = await load_results(pool, open_input(out), "home_recs", mv.version)
    assert (summary.units, summary.default_items) == (300, 10)
    local = CoOccurrenceRecommender.fit(inter).predict(None, features.head(3), {"top_k": 10})
    for unit, ids in zip(features["unit_id"].head(3), local["item_ids"], strict=True):
        text = await pool.fetchval(
            "SELECT items::text FROM results WHERE model = 'home_recs' AND unit_id = $1", unit
        )
        assert [i["id"] for i in orjson.loads(text)] == list(ids)
