"""Arrow record batches in the shapes of the column contract, as UnitBatches.

Every reader (CSV, JSON Lines, Parquet, BigQuery pages, a model's predictions) produces Arrow
record batches with the contract's column names and hands them here:

- long, one row per unit-item pair: ``unit_id, item_id, score[, rank]``. A unit's rows are
  contiguous; they are in rank order unless a ``rank`` column orders them.
- wide, one row per unit: ``unit_id, item_ids: list<string>, scores: list<double>``, or
  ``unit_id, items: list<{id, score}>``.

The work runs in Arrow's kernels and numpy, never one Python object per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.errors import LoadError
from batch.frames import UnitBatch, Where
from batch.inputs.input import RowCount

LONG = ("unit_id", "item_id", "score")  # the columns of a long input, before ``rank``
WIDE_ROWS = 4_000  # rows (units) per batch of wide inputs
LONG_ROWS = 400_000  # rows (items) per batch of long inputs


def chunk_rows(names: Sequence[str], batch_rows: int | None) -> int:
    """Rows per record batch: ``batch_rows`` when given, else the default of the shape."""
    return batch_rows or (LONG_ROWS if "item_id" in names else WIDE_ROWS)


def arrow_batches(
    rbs: Iterable[pa.RecordBatch], names: list[str], where: Where, count: RowCount
) -> Iterator[UnitBatch]:
    """UnitBatches of Arrow record batches in any shape of the contract (row numbers from 1)."""
    if "unit_id" not in names:
        raise LoadError(where.file, None, f"no 'unit_id' column (columns: {', '.join(names)})")
    if "item_id" in names:
        return long_batches(rbs, where, first_row=1, count=count)
    if "items" in names:
        return _wide(rbs, count, wide_items_batch)
    if "item_ids" in names and "scores" in names:
        return _wide(rbs, count, lambda rb, row0: wide_lists_batch(rb, row0, where))
    raise LoadError(
        where.file,
        None,
        f"columns {', '.join(names)} follow no contract: use unit_id,item_id,score[,rank] or "
        "unit_id,item_ids,scores or unit_id,items",
    )


def _wide(
    rbs: Iterable[pa.RecordBatch], count: RowCount, make: Callable[[pa.RecordBatch, int], UnitBatch]
) -> Iterator[UnitBatch]:
    for rb in rbs:
        row0 = count.rows + 1
        count.rows += rb.num_rows
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
    rbs: Iterable[pa.RecordBatch], where: Where, *, first_row: int, count: RowCount
) -> Iterator[UnitBatch]:
    """UnitBatches of long rows (``unit_id, item_id, score[, rank]``), whose units may span
    record batches: the last unit of each batch waits for the next one."""
    carry: pa.Table | None = None
    carry_row = first_row
    for rb in rbs:
        row0 = first_row + count.rows
        count.rows += rb.num_rows
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
