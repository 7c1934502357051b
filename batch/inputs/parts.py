"""Folders of Parquet part files (Spark's output) as one input, local or ``gs://``.

``open_parts`` takes the parts in order, each a name (for messages) and a way to open it, and
reads them as one Parquet file: rows numbered across the parts, every part with the first
part's columns. A folder's content hash is ``parts_digest`` over its parts' names and hashes,
given by the scheme that listed them: the sha256 of each file for a local folder
(``batch.inputs.local``), the md5s GCS computed for a ``gs://`` folder (``batch.inputs.gcs``),
so that the objects are not read twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import SourceError
from batch.frames import Where
from batch.inputs.arrow import arrow_batches, chunk_rows
from batch.inputs.input import Input, RowCount

FOOTER_THREADS = 8  # Parquet footers read at once when a folder is opened


@dataclass(frozen=True, slots=True)
class Part:
    """One Parquet part file of a folder: its name in messages and how to open it."""

    name: str
    opener: Callable[[], pa.NativeFile]


def is_part(name: str) -> bool:
    """Whether a file of a Spark output folder holds data: ``.parquet``/``.pq``, and not
    hidden or bookkeeping (``_SUCCESS``, ``.part-0.parquet.crc``)."""
    return name.endswith((".parquet", ".pq")) and not name.startswith((".", "_"))


def parts_digest(hashes: Iterable[tuple[str, str]]) -> str:
    """The hex sha256 over ``name\\0hash\\n`` lines, one per part in order: a folder's digest."""
    sha = hashlib.sha256()
    for name, digest in hashes:
        sha.update(f"{name}\0{digest}\n".encode())
    return sha.hexdigest()


def open_parts(
    uri: str,
    parts: Sequence[Part],
    rename: Mapping[str, str],
    batch_rows: int | None,
    content_hash: Callable[[], str],
    lineage: dict[str, object] | None = None,
) -> Input:
    """Parquet part files, in the order given, as one Input named ``uri``: rows numbered
    across the parts, every part with the first part's columns. The footers are read first
    (for the total of rows and the columns), each part is then streamed in turn; only one
    part is open at a time, so memory does not grow with the number of parts."""
    if not parts:
        raise SourceError(f"{uri}: a folder without .parquet files")
    # Footers are small ranged reads; on GCS each one is a round trip, so read them side by side.
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        footers = list(pool.map(_footer, parts))
    columns = footers[0][1]
    for part, (_, cols) in zip(parts, footers, strict=True):
        if cols != columns:
            raise SourceError(f"{part.name}: columns {cols} differ from {parts[0].name}")
    names = [rename.get(n, n) for n in columns]
    size = chunk_rows(names, batch_rows)

    def record_batches() -> Iterator[pa.RecordBatch]:
        for part in parts:
            with part.opener() as f:
                for rb in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=size):
                    yield rb.rename_columns(names)

    where, count = Where(uri, "row"), RowCount()
    return Input(
        uri,
        "parquet",
        arrow_batches(record_batches(), names, where, count),
        where,
        content_hash,
        count,
        total=sum(rows for rows, _ in footers),
        lineage=lineage or {},
    )


def _footer(part: Part) -> tuple[int, list[str]]:
    """A part's row count and column names, from its footer alone."""
    try:
        with part.opener() as f:
            meta = pq.read_metadata(f)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SourceError(f"{part.name}: cannot read its Parquet footer: {exc}") from None
    return meta.num_rows, meta.schema.to_arrow_schema().names
