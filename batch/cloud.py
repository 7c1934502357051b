"""``gs://`` and ``bq://`` inputs through the Google client libraries (the ``gcp`` extra).

- ``gs://BUCKET/OBJECT`` streams the object (``Blob.open``, ranged reads) into the same readers
  as local files. Credentials and project come from the environment (ADC); the
  ``STORAGE_EMULATOR_HOST`` variable points the client at an emulator. Lineage: the object's
  generation and md5 (or crc32c) as GCS computed them, so the object is not read twice.
- ``bq://PROJECT.DATASET.TABLE`` pages through the table as Arrow record batches
  (``list_rows(...).to_arrow_iterable``: the REST ``tabledata.list`` API, JSON pages converted
  to Arrow; the Storage Read API is not used, so google-cloud-bigquery-storage is not needed
  and emulators without it work). The ``BIGQUERY_EMULATOR_HOST`` variable (read by the client
  library) points the client at an emulator, with anonymous credentials. Lineage: the table's
  etag and modification time. The table follows the same column contract (long or wide); a
  long table must be ordered by unit (export it with ``ORDER BY unit_id, rank``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import SourceError
from batch.frames import Where
from batch.sources import Input, _fmt, arrow_batches, open_parquet, open_stream


def open_gcs(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A ``gs://bucket/object`` results file."""
    try:
        from google.cloud import storage
    except ImportError:
        raise SourceError(f"{uri}: install the gcp extra (pip install 'abgate[gcp]')") from None
    bucket_name, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket_name or not name:
        raise SourceError(f"{uri}: use gs://BUCKET/OBJECT")
    fmt = _fmt(name)
    blob = storage.Client().bucket(bucket_name).blob(name)
    try:
        blob.reload()
    except Exception as exc:  # google.api_core errors: NotFound, Forbidden, transport errors
        raise SourceError(f"{uri}: {type(exc).__name__}: {exc}") from None
    digest = f"md5:{blob.md5_hash}" if blob.md5_hash else f"crc32c:{blob.crc32c}"
    f = blob.open("rb", chunk_size=8 << 20)
    if fmt == "parquet":
        inp = open_parquet(pq.ParquetFile(f, pre_buffer=False), uri, rename, batch_rows)
    else:
        inp = open_stream(f, fmt, uri, rename)
        inp.total, inp.measure, inp.done = blob.size, "bytes", lambda: f.tell()
    inp.lineage = {"gcs_generation": str(blob.generation)}
    inp._hash = lambda: digest
    return inp


def open_bigquery(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A ``bq://project.dataset.table`` results table."""
    try:
        from google.cloud import bigquery
    except ImportError:
        raise SourceError(f"{uri}: install the gcp extra (pip install 'abgate[gcp]')") from None
    ref = uri.removeprefix("bq://")
    if ref.count(".") != 2:
        raise SourceError(f"{uri}: use bq://PROJECT.DATASET.TABLE")
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):  # the library's own variable: no credentials
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(project=ref.split(".")[0], credentials=AnonymousCredentials())
    else:
        client = bigquery.Client(project=ref.split(".")[0])
    try:
        table = client.get_table(ref)
    except Exception as exc:  # google.api_core errors
        raise SourceError(f"{uri}: {type(exc).__name__}: {exc}") from None
    names = [rename.get(f.name, f.name) for f in table.schema]
    where = Where(uri, "row")
    inp = Input(uri, "bigquery", iter(()), where, table.num_rows, "rows", lambda: 0)
    inp.done = lambda: inp.rows_read

    def record_batches() -> Iterator[pa.RecordBatch]:
        rows = client.list_rows(table, page_size=batch_rows or 50_000)
        for rb in rows.to_arrow_iterable():
            yield rb.rename_columns(names)

    inp.batches = arrow_batches(record_batches(), names, where, inp)
    inp.lineage = {"bq_modified": table.modified.isoformat() if table.modified else None}
    inp._hash = lambda: f"bq-etag:{table.etag}"
    return inp
