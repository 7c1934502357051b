"""The opened input of a load: its UnitBatches, progress and lineage, built in one go.

Every opener (one module per scheme) builds an ``Input`` once, with everything known: its
batches (a generator, read once), the ``RowCount`` those batches advance, and how to compute
its content hash. A streamed file's hash is only known after the file was read, so the hash
is a callable, called by the loader when the batches are exhausted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from batch.frames import UnitBatch, Where


@dataclass(slots=True)
class RowCount:
    """Rows (or lines) of an input read so far, advanced by its reader as batches are made."""

    rows: int = 0


@dataclass(slots=True)
class Input:
    """An opened input: its UnitBatches (read once), progress, and lineage.

    ``content_hash()`` is the input's content hash (``sha256:HEX`` of a file's bytes,
    ``md5:`` of a ``gs://`` object, ``bq-etag:`` of a table...), valid once the batches were
    read. Progress is counted in ``measure`` units out of ``total`` (None: unknown): bytes when
    ``position`` says how far a stream was read, else rows.
    """

    uri: str
    format: str
    batches: Iterator[UnitBatch]
    where: Where
    content_hash: Callable[[], str]
    count: RowCount
    total: int | None = None
    position: Callable[[], int] | None = None
    lineage: dict[str, object] = field(default_factory=dict)

    @property
    def rows_read(self) -> int:
        """Rows (or lines) read so far."""
        return self.count.rows

    @property
    def measure(self) -> str:
        """The unit of ``total`` and ``done()``: ``bytes`` or ``rows``."""
        return "rows" if self.position is None else "bytes"

    def done(self) -> int:
        """Progress so far, in ``measure`` units."""
        return self.count.rows if self.position is None else self.position()

    def __iter__(self) -> Iterator[tuple[str, list[dict[str, object]]]]:
        """``(unit_id, items)`` pairs, for callers of the older row API."""
        for b in self.batches:
            for i in range(len(b)):
                yield b.units[i].as_py(), b.items_of(i)
