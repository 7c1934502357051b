"""Results files by format (CSV, JSON Lines, Parquet), read from any binary file object.

The scheme modules (``local``, ``gcs``, ``parts``) open the bytes; this module reads them:

- ``.csv``: long rows, streamed in blocks of ``BLOCK`` bytes; messages name the line.
- ``.jsonl``/``.ndjson``/``.json``: JSON Lines of ``{"unit_id", "items": [{id, score}]}``,
  streamed likewise.
- ``.parquet``/``.pq``: long or wide, read by row groups (``pre_buffer`` off: it would keep
  every row group read so far, so memory would grow with the file); messages name the row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from batch.errors import LoadError, SourceError
from batch.frames import UnitBatch, Where
from batch.inputs.arrow import LONG, arrow_batches, chunk_rows, long_batches, wide_items_batch
from batch.inputs.input import RowCount

BLOCK = 8 << 20  # bytes per CSV/JSON block

_JSONL_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("items", pa.list_(pa.struct([("id", pa.string()), ("score", pa.float64())]))),
    ]
)


def format_of(name: str) -> str:
    """The format of a results file by its name: ``csv``, ``jsonl`` or ``parquet``."""
    for suffix, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise SourceError(f"{name}: unknown format; use .csv, .jsonl/.ndjson or .parquet")


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashingReader:
    """A read-only file that hashes what passes through it and counts the bytes."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.pos = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha.update(data)
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.closed = True
        self._f.close()


def stream_batches(
    f: object, fmt: str, where: Where, rename: Mapping[str, str], count: RowCount
) -> Iterator[UnitBatch]:
    """The UnitBatches of a CSV or JSON Lines stream (a binary file object)."""
    if fmt == "csv":
        return _csv_batches(f, where, rename, count)
    if fmt == "jsonl":
        return _jsonl_batches(f, where, rename, count)
    raise SourceError(f"{where.file}: {fmt} cannot be streamed")


def parquet_batches(
    pf: pq.ParquetFile,
    where: Where,
    rename: Mapping[str, str],
    batch_rows: int | None,
    count: RowCount,
) -> Iterator[UnitBatch]:
    """The UnitBatches of a Parquet file (long or wide), ``batch_rows`` rows at a time."""
    names = [rename.get(n, n) for n in pf.schema_arrow.names]
    size = chunk_rows(names, batch_rows)

    def record_batches() -> Iterator[pa.RecordBatch]:
        for rb in pf.iter_batches(batch_size=size):
            yield rb.rename_columns(names)

    return arrow_batches(record_batches(), names, where, count)


def _csv_batches(
    f: object, where: Where, rename: Mapping[str, str], count: RowCount
) -> Iterator[UnitBatch]:
    source_of = {v: k for k, v in rename.items()}
    canonical = {source_of.get(c, c): c for c in (*LONG, "rank")}  # input name -> contract name
    try:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(block_size=BLOCK),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in canonical},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise LoadError(where.file, 1, f"cannot read the CSV header: {exc}") from None
    names = [canonical.get(n, n) for n in reader.schema.names]
    missing = [c for c in LONG if c not in names]
    if missing:
        raise LoadError(
            where.file,
            1,
            f"missing column(s): {', '.join(missing)} (header: {','.join(reader.schema.names)})",
        )

    def record_batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise LoadError(
                    where.file, None, f"invalid CSV after line {count.rows + 1}: {exc}"
                ) from None
            yield rb.rename_columns(names)

    # CSV data row r (0-based) is on line r + 2 (the header is line 1).
    yield from long_batches(record_batches(), where, first_row=2, count=count)


def _jsonl_batches(
    f: object, where: Where, rename: Mapping[str, str], count: RowCount
) -> Iterator[UnitBatch]:
    source_of = {v: k for k, v in rename.items()}
    schema = pa.schema([pa.field(source_of.get(f.name, f.name), f.type) for f in _JSONL_SCHEMA])
    try:
        reader = pajson.open_json(
            f,
            read_options=pajson.ReadOptions(block_size=BLOCK),
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                return
            rb = rb.rename_columns([rename.get(n, n) for n in rb.schema.names])
            row0 = count.rows + 1
            count.rows += rb.num_rows
            yield wide_items_batch(rb, row0)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LoadError(
            where.file, None, f"invalid JSON Lines after line {count.rows}: {exc}"
        ) from None
