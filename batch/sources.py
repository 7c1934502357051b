"""Inputs of a load: local files, folders of Parquet parts (local or ``gs://``), ``gs://``
objects and ``bq://`` tables, as UnitBatches.

Column contract (names can be mapped with ``columns={"unit_id": "user_id", ...}``):

- long, one row per unit-item pair: ``unit_id, item_id, score[, rank]`` (CSV, Parquet, BigQuery).
  A unit's rows are contiguous; they are in rank order unless a ``rank`` column orders them.
- wide, one row per unit: ``unit_id, item_ids: list<string>, scores: list<double>`` (Parquet,
  BigQuery), or ``unit_id, items: list<{id, score}>`` (Parquet, BigQuery, JSON Lines).

The unit ``__default__`` holds the version's default list. Inputs are read in bounded chunks,
so memory does not grow with the input. Each input also reports lineage: its URI, a content
hash (sha256 of the bytes for files; the object's md5 for gs://; the table's etag for bq://).
A folder of Parquet parts, local or ``gs://``, is one input: see ``batch/parts.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from batch.errors import LoadError, SourceError
from batch.frames import UnitBatch, Where

LONG = ("unit_id", "item_id", "score")
BLOCK = 8 << 20  # bytes per CSV/JSON block
WIDE_ROWS = 4_000  # Parquet rows (units) per batch of wide files
LONG_ROWS = 400_000  # Parquet rows (items) per batch of long files

_JSONL_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("items", pa.list_(pa.struct([("id", pa.string()), ("score", pa.float64())]))),
    ]
)


@dataclass(slots=True)
class Input:
    """An opened input: its UnitBatches (read once), progress, and lineage."""

    uri: str
    format: str
    batches: Iterator[UnitBatch]
    where: Where
    total: int | None  # in ``measure`` units, for the ETA
    measure: str  # "bytes" or "rows"
    done: Callable[[], int]
    lineage: dict[str, object] = field(default_factory=dict)
    rows_read: int = 0
    _hash: Callable[[], str] | None = None

    def content_hash(self) -> str:
        """The input's content hash (after it was read, for streamed files)."""
        return self._hash() if self._hash else ""

    def __iter__(self) -> Iterator[tuple[str, list[dict[str, object]]]]:
        """``(unit_id, items)`` pairs, for callers of the older row API."""
        for b in self.batches:
            for i in range(len(b)):
                yield b.units[i].as_py(), b.items_of(i)


class _HashingReader:
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


def _fmt(name: str) -> str:
    for suffix, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise SourceError(f"{name}: unknown format; use .csv, .jsonl/.ndjson or .parquet")


def open_input(
    uri: str | Path, *, columns: Mapping[str, str] | None = None, batch_rows: int | None = None
) -> Input:
    """Open a local file or folder, ``gs://bucket/object``, ``gs://bucket/folder/`` or
    ``bq://project.dataset.table``."""
    text = str(uri)
    rename = {v: k for k, v in (columns or {}).items()}
    if text.startswith("gs://"):
        from batch.cloud import open_gcs

        return open_gcs(text, rename, batch_rows)
    if text.startswith("bq://"):
        from batch.cloud import open_bigquery

        return open_bigquery(text, rename, batch_rows)
    path = Path(text)
    if path.is_dir():
        from batch.parts import open_parquet_folder  # batch.parts builds on this module

        return open_parquet_folder(path, rename, batch_rows)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    fmt = _fmt(path.name)
    if fmt == "parquet":
        # pre_buffer would keep every row group read so far: memory would grow with the file.
        inp = open_parquet(pq.ParquetFile(path, pre_buffer=False), text, rename, batch_rows)
        inp._hash = lambda: "sha256:" + _file_sha256(path)
        return inp
    reader = _HashingReader(path.open("rb"))
    inp = open_stream(reader, fmt, text, rename)
    inp.batches = _closing(inp.batches, reader)
    size = path.stat().st_size if path.is_file() else None  # None: a pipe
    inp.total, inp.measure, inp.done = size, "bytes", lambda: reader.pos
    inp._hash = lambda: "sha256:" + reader.sha.hexdigest()
    return inp


def _closing(batches: Iterator[UnitBatch], f: _HashingReader) -> Iterator[UnitBatch]:
    try:
        yield from batches
    finally:
        f.close()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def open_stream(f: object, fmt: str, uri: str, rename: Mapping[str, str]) -> Input:
    """A CSV or JSON Lines stream (a binary file object) as an Input."""
    if fmt == "csv":
        where = Where(uri, "line")
        inp = Input(uri, fmt, iter(()), where, None, "bytes", lambda: 0)
        inp.batches = _csv_batches(f, where, rename, inp)
        return inp
    if fmt == "jsonl":
        where = Where(uri, "line")
        inp = Input(uri, fmt, iter(()), where, None, "bytes", lambda: 0)
        inp.batches = _jsonl_batches(f, where, rename, inp)
        return inp
    raise SourceError(f"{uri}: {fmt} cannot be streamed")


def _csv_batches(
    f: object, where: Where, rename: Mapping[str, str], inp: Input
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
                    where.file, None, f"invalid CSV after line {inp.rows_read + 1}: {exc}"
                ) from None
            yield rb.rename_columns(names)

    # CSV data row r (0-based) is on line r + 2 (the header is line 1).
    yield from long_batches(record_batches(), where, first_row=2, inp=inp)


def _jsonl_batches(
    f: object, where: Where, rename: Mapping[str, str], inp: Input
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
            row0 = inp.rows_read + 1
            inp.rows_read += rb.num_rows
            yield wide_items_batch(rb, row0)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LoadError(
            where.file, None, f"invalid JSON Lines after line {inp.rows_read}: {exc}"
        ) from None


def open_parquet(
    pf: pq.ParquetFile, uri: str, rename: Mapping[str, str], batch_rows: int | None
) -> Input:
    """A Parquet file (long or wide) as an Input."""
    where = Where(uri, "row")
    total = pf.metadata.num_rows
    inp = Input(uri, "parquet", iter(()), where, total, "rows", lambda: 0)
    inp.done = lambda: inp.rows_read
    names = [rename.get(n, n) for n in pf.schema_arrow.names]

    size = batch_rows or (LONG_ROWS if "item_id" in names else WIDE_ROWS)

    def record_batches() -> Iterator[pa.RecordBatch]:
        for rb in pf.iter_batches(batch_size=size):
            yield rb.rename_columns(names)

    inp.batches = arrow_batches(record_batches(), names, where, inp)
    return inp


def arrow_batches(
    rbs: Iterable[pa.RecordBatch], names: list[str], where: Where, inp: Input
) -> Iterator[UnitBatch]:
    """UnitBatches of Arrow record batches in any shape of the contract (row numbers from 1)."""
    if "unit_id" not in names:
        raise LoadError(where.file, None, f"no 'unit_id' column (columns: {', '.join(names)})")
    if "item_id" in names:
        return long_batches(rbs, where, first_row=1, inp=inp)
    if "items" in names:
        return _wide(rbs, inp, wide_items_batch)
    if "item_ids" in names and "scores" in names:
        return _wide(rbs, inp, lambda rb, row0: wide_lists_batch(rb, row0, where))
    raise LoadError(
        where.file,
        None,
        f"columns {', '.join(names)} follow no contract: use unit_id,item_id,score[,rank] or "
        "unit_id,item_ids,scores or unit_id,items",
    )


def _wide(
    rbs: Iterable[pa.RecordBatch], inp: Input, make: Callable[[pa.RecordBatch, int], UnitBatch]
) -> Iterator[UnitBatch]:
    for rb in rbs:
        row0 = inp.rows_read + 1
        inp.rows_read += rb.num_rows
        yield make(rb, row0)


def _offsets(lists: pa.Array) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def wide_items_batch(rb: pa.RecordBatch, row0: int) -> UnitBatch:
    """A batch of ``unit_id, items: list<{id, score}>`` rows."""
    lists = rb.column("items")
    flat = pc.list_flatten(lists)
    return UnitBatch(
        rb.column("unit_id").cast(pa.string()),
        _offsets(lists),
        flat.field("id").cast(pa.string()),
        flat.field("score").cast(pa.float64()),
        np.arange(row0, row0 + rb.num_rows, dtype=np.int64),
    )


def wide_lists_batch(rb: pa.RecordBatch, row0: int, where: Where) -> UnitBatch:
    """A batch of ``unit_id, item_ids: list<string>, scores: list<double>`` rows."""
    ids, scores = rb.column("item_ids"), rb.column("scores")
    differ = pc.not_equal(pc.list_value_length(ids), pc.list_value_length(scores))
    bad = pc.index(pc.fill_null(differ, False), True).as_py()
    if bad >= 0:
        raise where.error(row0 + bad, "fields 'item_ids' and 'scores' have different lengths")
    return UnitBatch(
        rb.column("unit_id").cast(pa.string()),
        _offsets(ids),
        pc.list_flatten(ids).cast(pa.string()),
        pc.list_flatten(scores).cast(pa.float64()),
        np.arange(row0, row0 + rb.num_rows, dtype=np.int64),
    )


def _to_float(col: pa.Array, name: str, first_row: int, where: Where) -> pa.Array:
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return col.cast(pa.float64())
    try:
        return pc.cast(col, pa.float64())
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(
            col,
            r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|(?i:nan|inf|infinity))\s*$",
        )
        i = pc.index(pc.fill_null(ok, False), False).as_py()
        raise where.error(
            first_row + max(i, 0), f"field '{name}' is '{col[max(i, 0)].as_py()}', not a number"
        ) from None


def long_batches(
    rbs: Iterable[pa.RecordBatch], where: Where, *, first_row: int, inp: Input
) -> Iterator[UnitBatch]:
    """UnitBatches of long rows (``unit_id, item_id, score[, rank]``), whose units may span
    record batches: the last unit of each batch waits for the next one."""
    carry: pa.Table | None = None
    carry_row = first_row
    for rb in rbs:
        row0 = first_row + inp.rows_read
        inp.rows_read += rb.num_rows
        table = pa.Table.from_batches([rb])
        if carry is not None and carry.num_rows:
            table = pa.concat_tables([carry, table.select(carry.column_names)])
            row0 = carry_row
        cut = _last_run_start(table.column("unit_id").combine_chunks())
        if cut:
            yield _long_batch(table.slice(0, cut), row0, where)
        carry, carry_row = table.slice(cut), row0 + cut
    if carry is not None and carry.num_rows:
        yield _long_batch(carry, carry_row, where)


def _run_starts(units: pa.Array) -> np.ndarray:
    n = len(units)
    if n == 0:
        return np.zeros(0, np.int64)
    change = pc.fill_null(pc.not_equal(units.slice(1), units.slice(0, n - 1)), True)
    return np.concatenate([[0], np.flatnonzero(change.to_numpy(zero_copy_only=False)) + 1]).astype(
        np.int64
    )


def _last_run_start(units: pa.Array) -> int:
    starts = _run_starts(units)
    return int(starts[-1]) if len(starts) else 0


def _long_batch(table: pa.Table, row0: int, where: Where) -> UnitBatch:
    cols = {n: table.column(n).combine_chunks() for n in table.column_names}
    units = cols["unit_id"].cast(pa.string())
    starts = _run_starts(units)
    n = table.num_rows
    offsets = np.append(starts, n)
    item_rows = np.arange(row0, row0 + n, dtype=np.int64)
    ids = cols["item_id"].cast(pa.string())
    scores = _to_float(cols["score"], "score", row0, where)
    if "rank" in cols:
        rank = _to_float(cols["rank"], "rank", row0, where)
        bad = pc.index(pc.fill_null(pc.is_finite(rank), False), False).as_py()
        if bad >= 0:
            raise where.error(
                row0 + bad, f"field 'rank' is {rank[bad].as_py()}, not a finite number"
            )
        run = np.repeat(np.arange(len(starts)), np.diff(offsets))
        order = pc.sort_indices(
            pa.table({"run": run, "rank": rank}),
            sort_keys=[("run", "ascending"), ("rank", "ascending")],
        )
        ids, scores, item_rows = ids.take(order), scores.take(order), item_rows[order.to_numpy()]
    return UnitBatch(units.take(pa.array(starts)), offsets, ids, scores, row0 + starts, item_rows)
