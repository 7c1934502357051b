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

Each prediction is an MLflow run (in the experiment of the version's training run) whose input
is the feature table, logged with ``mlflow.data`` (context ``inference``, digest and source the
file's), so MLflow shows which data a version's results came from; the load's lineage names the
run (``predict_run_id``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batch.errors import PredictError, SourceError
from batch.frames import DEFAULT_UNIT, UnitBatch, Where
from batch.inputs import Input, RowCount, file_sha256, wide_lists_batch
from batch.lineage import lineage_tags
from batch.load import Limits, LoadSummary, Progress, load_results
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
    """An Input whose batches are the model's predictions, chunk by chunk, default list first.

    Its lineage's ``top_k`` is the longest list the model actually produced (a model may
    return fewer than asked, e.g. when it knows fewer items), ``top_k_requested`` the argument.
    """
    batches, total = feature_batches(path, chunk_rows)
    where, count = Where(str(path), "row"), RowCount()
    lineage: dict[str, object] = {"top_k": 0, "top_k_requested": top_k}
    produced = 0

    def longest(batch: UnitBatch) -> UnitBatch:
        nonlocal produced
        if len(batch):
            produced = max(produced, int(np.diff(batch.offsets).max()))
            lineage["top_k"] = produced
        return batch

    def produce() -> Iterator[UnitBatch]:
        first = True
        for rb in batches:
            if "unit_id" not in rb.schema.names:
                raise SourceError(f"{path}: features need a unit_id column (got {rb.schema.names})")
            df = rb.to_pandas()
            if first:
                blank = pd.DataFrame({c: [None] for c in df.columns}).astype(object)
                blank["unit_id"] = DEFAULT_UNIT
                yield longest(_predictions(model, blank, top_k, 0, where))
                first = False
            row0 = count.rows + 1
            count.rows += rb.num_rows
            yield longest(_predictions(model, df, top_k, row0, where))

    return Input(
        str(path),
        "predictions",
        produce(),
        where,
        functools.partial(features_sha256, path),
        count,
        total=total,
        lineage=lineage,
    )


def features_sha256(path: Path) -> str:
    """``sha256:HEX`` of a feature table's bytes."""
    return "sha256:" + file_sha256(path)


def features_dataset(path: Path, sha256: str) -> Any:
    """The feature table as an ``mlflow.data`` dataset: its source (the file's URI), its digest
    and its schema, without reading the data (a MetaDataset: the table may be larger than
    memory).

    MLflow keeps at most 36 characters of a digest, so the dataset's digest is the first 32 hex
    digits of the file's sha256; the whole hash is the input tag ``abgate.sha256``.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    batches, _ = feature_batches(path, 100)
    sample = next(iter(batches), None)
    schema = infer_signature(sample.to_pandas()).inputs if sample is not None else None
    source = resolve_dataset_source(path.resolve().as_uri())
    return MetaDataset(  # type: ignore[abstract]  # mlflow's own docs build it so
        source, name=path.name, digest=sha256.removeprefix("sha256:")[:32], schema=schema
    )


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
    """Resolve ``ref``, score ``features`` with it in an MLflow run, load the lists as the
    resolved version and tag that MLflow model version with the lineage."""
    rv = await registry.resolve(ref)
    model = await registry.load_pyfunc(rv.version)
    inp = prediction_input(model, features, top_k, chunk_rows)
    sha = await asyncio.to_thread(features_sha256, features)
    dataset = await asyncio.to_thread(features_dataset, features, sha)
    run_id = await registry.start_inference_run(
        rv,
        dataset,
        params={"top_k_requested": str(top_k), "chunk_rows": str(chunk_rows)},
        tags={"abgate.model_version": str(rv.version), "abgate.model_uri": str(ref)},
        input_tags={"abgate.sha256": sha},
    )
    extra = {
        "model_uri": str(ref),
        "predict_run_id": run_id,
        "mlflow": {
            "name": rv.version.name,
            "version": rv.version.version,
            "run_id": rv.run_id,
            "source": rv.source,
        },
    }
    try:
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
    except BaseException:
        await registry.end_run(run_id, failed=True, tags={})
        raise
    await registry.end_run(
        run_id,
        failed=False,
        tags={
            "abgate.results_sha256": summary.results_sha256,
            "abgate.units": str(summary.units),
            "abgate.top_k": str(inp.lineage["top_k"]),
            "abgate.unchanged": "true" if summary.unchanged else "false",
        },
    )
    if write_tags and not summary.unchanged:
        meta = await pool.fetchval(
            "SELECT metadata::text FROM result_loads WHERE load_id = $1", summary.load_id
        )
        await registry.set_tags(rv.version, lineage_tags(orjson.loads(meta)))
    return rv, summary
