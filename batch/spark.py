"""Batch inference at scale on Spark: the same pyfunc model through ``mlflow.pyfunc.spark_udf``.

    spark-submit ... -c 'from batch.spark import spark_predict; spark_predict(spark, ...)'

writes a wide Parquet folder (``unit_id, item_ids, scores``, with the ``__default__`` unit) that
``abgate batch load FOLDER`` loads like any other input (its part files, in name order).
The partitioning rule below keeps each task's pandas batch bounded, as ``--chunk-rows`` does
locally; it is pure and unit-tested. tests/batch/test_spark.py also runs the example model
through a local Spark session when pyspark is installed (the ``spark`` extra, not part of
``make test``: ~20 s, and a 320 MB install); see docs/ml-engineers.md for the command.
"""

from __future__ import annotations

import math
from typing import Any

RESULT_TYPE = "item_ids array<string>, scores array<double>"


def partition_count(
    rows: int, *, cores: int, rows_per_partition: int = 50_000, max_partitions: int = 20_000
) -> int:
    """Partitions for scoring ``rows`` feature rows.

    Enough that no partition holds more than ``rows_per_partition`` rows (memory per task),
    a multiple of ``cores`` so that the last wave of tasks keeps every core busy, at least one
    wave, never more partitions than rows nor than ``max_partitions``.
    """
    if rows <= 0:
        return 1
    cores = max(cores, 1)
    needed = math.ceil(rows / rows_per_partition)
    waves = max(math.ceil(needed / cores), 1)
    return max(1, min(waves * cores, rows, max_partitions))


def spark_predict(
    spark: Any,
    features: str,
    model_uri: str,
    top_k: int,
    output: str,
    *,
    rows_per_partition: int = 50_000,
) -> int:
    """Score a Parquet feature table with ``model_uri`` on Spark; write wide Parquet; return rows."""
    from mlflow.pyfunc import spark_udf
    from pyspark.sql import functions as F

    df = spark.read.parquet(features)
    default = spark.createDataFrame([("__default__",)], ["unit_id"])
    for name, dtype in df.dtypes:
        if name != "unit_id":
            default = default.withColumn(name, F.lit(None).cast(dtype))
    df = df.unionByName(default)
    rows = df.count()
    parts = partition_count(
        rows, cores=spark.sparkContext.defaultParallelism, rows_per_partition=rows_per_partition
    )
    udf = spark_udf(
        spark, model_uri, result_type=RESULT_TYPE, env_manager="local", params={"top_k": top_k}
    )
    scored = df.repartition(parts).withColumn("p", udf(F.struct(*[c for c in df.columns])))
    scored.select(
        "unit_id",
        F.slice("p.item_ids", 1, top_k).alias("item_ids"),
        F.slice("p.scores", 1, top_k).alias("scores"),
    ).write.mode("overwrite").parquet(output)
    return int(rows)
