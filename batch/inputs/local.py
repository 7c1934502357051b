"""Local results: a file (``.csv``, ``.jsonl``, ``.parquet``), a folder of Parquet parts, or
a pipe. Lineage: ``sha256:`` of the file's bytes, hashed as they are read (a Parquet file is
hashed after the load, reading it once more); for a folder, ``sha256:`` + ``parts_digest``
over its parts' names and sha256s."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import SourceError
from batch.frames import UnitBatch, Where
from batch.inputs.formats import (
    HashingReader,
    file_sha256,
    format_of,
    parquet_batches,
    stream_batches,
)
from batch.inputs.input import Input, RowCount
from batch.inputs.parts import Part, is_part, open_parts, parts_digest


def open_local(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A local file, pipe or folder of Parquet parts as an Input."""
    path = Path(uri)
    if path.is_dir():
        return open_parquet_folder(path, rename, batch_rows)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    fmt = format_of(path.name)
    count = RowCount()
    if fmt == "parquet":
        where = Where(uri, "row")
        # pre_buffer would keep every row group read so far: memory would grow with the file.
        pf = pq.ParquetFile(path, pre_buffer=False)
        batches = parquet_batches(pf, where, rename, batch_rows, count)
        digest = functools.partial(_sha256_of, path)
        return Input(uri, fmt, batches, where, digest, count, total=pf.metadata.num_rows)
    where = Where(uri, "line")
    reader = HashingReader(path.open("rb"))
    return Input(
        uri,
        fmt,
        _closing(stream_batches(reader, fmt, where, rename, count), reader),
        where,
        lambda: "sha256:" + reader.sha.hexdigest(),
        count,
        total=path.stat().st_size if path.is_file() else None,  # None: a pipe
        position=reader.tell,
    )


def open_parquet_folder(path: Path, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A local folder of Parquet part files (Spark's output) as one Input (``open_parts``);
    its content hash is ``sha256:`` over the parts' names and sha256s (``parts_digest``)."""
    files = sorted(p for p in path.iterdir() if p.is_file() and is_part(p.name))
    parts = [Part(str(p), functools.partial(pa.OSFile, str(p))) for p in files]

    def digest() -> str:
        return "sha256:" + parts_digest((p.name, file_sha256(p)) for p in files)

    return open_parts(str(path), parts, rename, batch_rows, digest)


def _sha256_of(path: Path) -> str:
    return "sha256:" + file_sha256(path)


def _closing(batches: Iterator[UnitBatch], f: HashingReader) -> Iterator[UnitBatch]:
    try:
        yield from batches
    finally:
        f.close()
