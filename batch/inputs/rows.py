"""Python rows as an input: ``(unit_id, items)`` pairs from the Python API (``load_results``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from batch.frames import UnitBatch, Where, from_python
from batch.inputs.input import Input, RowCount

PY_CHUNK = 5_000  # units per chunk for the Python row API


def rows_input(rows: Iterable[tuple[str, list[dict[str, object]]]], source: str = "") -> Input:
    """An Input over ``(unit_id, items)`` pairs (the Python API), checked naming the row.

    It has no content hash (``""``): the rows are not kept; the loaded results have their own
    digest (``results_sha256``)."""
    where, count = Where(source or "<rows>", "row"), RowCount()

    def batches() -> Iterator[UnitBatch]:
        it = iter(rows)
        while True:
            chunk = [r for _, r in zip(range(PY_CHUNK), it, strict=False)]
            if not chunk:
                return
            row0 = count.rows + 1
            count.rows += len(chunk)
            yield from_python(chunk, row0, where)

    return Input(where.file, "rows", batches(), where, lambda: "", count)
