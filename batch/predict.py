"""Batch inference: score a feature table with an MLflow pyfunc model, load the lists.

The model is resolved in the registry (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) and
its results are loaded as that resolved version, so the gateway serves exactly what this model
version predicted. Features are read and scored ``chunk_rows`` at a time, each chunk flowing
through the loader (batch/load.py) before the next is scored: memory is bounded by a few chunks,
whatever the input size.

Output contract of the model: ``predict(df, params={"top_k": K})`` returns one row per input
row, in input order, with list columns ``item_ids`` and ``scores`` (best first); lists longer
than K are cut. The default list is the model's prediction for a unit with no features (a row
whose only value is ``unit_id = "__default__"``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batch.errors import PredictError, SourceError
from batch.frames import DEFAULT_UNIT, UnitBatch, Where
from batch.lineage import lineage_tags
from batch.load import Limits, LoadSummary, Progress, load_results
from batch.sources import Input, wide_lists_batch
from experiments import ModelRef
from registry import MlflowRegistry, RegisteredVersion


def feature_batches(path: Path, chunk_rows: int) -> tuple[Iterator[pa.RecordBatch], int | None]:
    """Record batches of at most ``chunk_rows`` rows of a Parquet or CSV feature table."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.suffix in (".parquet", ".pq"):
        pf = pq.ParquetFile(path, pre_buffer=False)
        return pf.iter_batches(batch_size=chunk_rows), pf.metadata.num_rows
    if path.suffix == ".csv":
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 20),
            convert_options=pacsv.ConvertOptions(column_types={"unit_id": pa.string()}),
        )

        def rebatch() -> Iterator[pa.RecordBatch]:
            for rb in reader:
                for start in range(0, rb.num_rows, chunk_rows):
                    yield rb.slice(start, chunk_rows)

        return rebatch(), None
    raise SourceError(f"{path}: features must be .parquet or .csv")


def _predictions(model: Any, df: pd.DataFrame, top_k: int, row0: int, where: Where) -> UnitBatch:
    try:
        out = model.predict(df, params={"top_k": top_k})
    except Exception as exc:  # the model's own code: report which chunk failed, keep the cause
        raise PredictError(
            f"{where.file}: the model failed on rows {row0}-{row0 + len(df) - 1}: {exc}"
        ) from exc
    if not isinstance(out, pd.DataFrame) or not {"item_ids", "scores"} <= set(out.columns):
        raise PredictError(
            f"{where.file}: the model must return a DataFrame with list columns item_ids and "
            f"scores (got {type(out).__name__} {list(getattr(out, 'columns', []))})"
        )
    if len(out) != len(df):
        raise PredictError(
            f"{where.file}: the model returned {len(out)} rows for {len(df)} input rows "
            f"(rows {row0}-{row0 + len(df) - 1})"
        )
    ids = pc.list_slice(pa.array(out["item_ids"].tolist(), pa.list_(pa.string())), 0, top_k)
    scores = pc.list_slice(pa.array(out["scores"].tolist(), pa.list_(pa.float64())), 0, top_k)
    units = pa.array(df["unit_id"].astype(str).tolist(), pa.string())
    rb = pa.RecordBatch.from_arrays([units, ids, scores], ["unit_id", "item_ids", "scores"])
    return wide_lists_batch(rb, row0, where)


def prediction_input(model: Any, path: Path, top_k: int, chunk_rows: int) -> Input:
    """An Input whose batches are the model's predictions, chunk by chunk, default list first."""
    batches, total = feature_batches(path, chunk_rows)
    where = Where(str(path), "row")
    inp = Input(str(path), "predictions", iter(()), where, total, "rows", lambda: 0)
    inp.done = lambda: inp.rows_read

    def produce() -> Iterator[UnitBatch]:
        first = True
        for rb in batches:
            if "unit_id" not in rb.schema.names:
                raise SourceError(f"{path}: features need a unit_id column (got {rb.schema.names})")
            df = rb.to_pandas()
            if first:
                blank = pd.DataFrame({c: [None] for c in df.columns}).astype(object)
                blank["unit_id"] = DEFAULT_UNIT
                yield _predictions(model, blank, top_k, 0, where)
                first = False
            row0 = inp.rows_read + 1
            inp.rows_read += rb.num_rows
            yield _predictions(model, df, top_k, row0, where)

    def file_hash() -> str:
        with path.open("rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()

    inp.batches = produce()
    inp._hash = file_hash
    return inp


async def predict(
    pool: asyncpg.Pool,
    registry: MlflowRegistry,
    ref: ModelRef,
    features: Path,
    *,
    top_k: int,
    chunk_rows: int = 10_000,
    alias: str | None = None,
    activate: bool = True,
    replace: bool = False,
    progress: Progress | None = None,
    write_tags: bool = True,
) -> tuple[RegisteredVersion, LoadSummary]:
    """Resolve ``ref``, score ``features`` with it, load the lists as the resolved version and
    tag that MLflow model version with the lineage."""
    rv = await registry.resolve(ref)
    model = await registry.load_pyfunc(rv.version)
    inp = prediction_input(model, features, top_k, chunk_rows)
    extra = {
        "model_uri": str(ref),
        "top_k": top_k,
        "mlflow": {
            "name": rv.version.name,
            "version": rv.version.version,
            "run_id": rv.run_id,
            "source": rv.source,
        },
    }
    summary = await load_results(
        pool,
        inp,
        rv.version.name,
        rv.version.version,
        alias=alias,
        activate=activate,
        replace=replace,
        limits=Limits(max_items=max(top_k, 1)),
        progress=progress,
        metadata=extra,
    )
    if write_tags and not summary.unchanged:
        meta = await pool.fetchval(
            "SELECT metadata::text FROM result_loads WHERE load_id = $1", summary.load_id
        )
        await registry.set_tags(rv.version, lineage_tags(orjson.loads(meta)))
    return rv, summary
