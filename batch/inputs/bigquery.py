"""``bq://PROJECT.DATASET.TABLE`` inputs through google-cloud-bigquery (the ``gcp`` extra).

- The table is read as Arrow record batches through the BigQuery Storage Read API (gRPC) when
  google-cloud-bigquery-storage is installed (the gcp extra installs it), else through the REST
  ``tabledata.list`` API (JSON pages converted to Arrow, many times slower); both by
  ``list_rows(...).to_arrow_iterable``. Lineage: the table's etag and modification time, and
  ``bq_read_api``: ``storage`` or ``rest``.
- The table follows the same column contract (long or wide); a long table must be ordered by
  unit (write it with ``ORDER BY unit_id, rank``). The Storage Read API reads a long table in
  one stream (``max_stream_count=1``: several interleave their rows, which would split its
  units) and a wide table in up to ``STREAMS`` (its rows may come in any order:
  ``results_sha256`` ignores the order, so loading the same version again is still a no-op).
  Its pages are sliced (without copies) into chunks of ``batch_rows``, or of the Parquet
  defaults. Client errors while reading (PermissionDenied: the Storage Read API needs
  ``bigquery.readsessions.create``) are SourceErrors naming the URI.
- Emulators: ``BIGQUERY_EMULATOR_HOST`` (read by the client library) points the REST client at
  one, with anonymous credentials. ``BIGQUERY_STORAGE_EMULATOR_HOST=HOST:PORT`` (ours: the
  library has no such variable) points the Storage Read client at the emulator's gRPC port,
  over an insecure channel; with ``BIGQUERY_EMULATOR_HOST`` alone the table is read through
  REST, never through Google's own gRPC endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from batch.errors import SourceError
from batch.frames import Where
from batch.inputs.arrow import arrow_batches, chunk_rows
from batch.inputs.input import Input, RowCount

STREAMS = 4  # Storage Read streams of a wide table, read in parallel


def open_bigquery(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A ``bq://project.dataset.table`` results table, read through the Storage Read API when
    google-cloud-bigquery-storage is installed, else through the REST ``tabledata.list`` API."""
    try:
        from google.cloud import bigquery
    except ImportError:
        raise SourceError(f"{uri}: install the gcp extra (pip install 'abgate[gcp]')") from None
    ref = uri.removeprefix("bq://")
    if ref.count(".") != 2:
        raise SourceError(f"{uri}: use bq://PROJECT.DATASET.TABLE")
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):  # the library's own variable: no credentials
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(project=ref.split(".")[0], credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    else:
        client = bigquery.Client(project=ref.split(".")[0])
    try:
        table = client.get_table(ref)
        read_client = _read_client()
    except Exception as exc:  # google.api_core errors; google.auth: no credentials
        raise SourceError.from_client(uri, exc) from None
    names = [rename.get(f.name, f.name) for f in table.schema]

    def pages() -> Iterator[pa.RecordBatch]:
        if read_client is None:
            yield from client.list_rows(table, page_size=batch_rows or 50_000).to_arrow_iterable()
            return
        # A long table needs its order, so one stream (several interleave their rows); a
        # wide table's rows may come in any order (the results digest ignores it): up to
        # STREAMS, read in parallel, each buffering a page or so.
        streams = 1 if "item_id" in names else STREAMS
        rows = client.list_rows(table).to_arrow_iterable(
            bqstorage_client=read_client, max_stream_count=streams
        )
        size = chunk_rows(names, batch_rows)
        for rb in rows:  # the server sizes its pages; slices (no copies) bound the chunks
            for start in range(0, rb.num_rows, size):
                yield rb.slice(start, size)

    def record_batches() -> Iterator[pa.RecordBatch]:
        try:
            for rb in pages():
                yield rb.rename_columns(names)
        except Exception as exc:  # google.api_core errors: Forbidden, transport errors
            raise SourceError.from_client(uri, exc) from None

    where, count = Where(uri, "row"), RowCount()
    etag = f"bq-etag:{table.etag}"
    return Input(
        uri,
        "bigquery",
        arrow_batches(record_batches(), names, where, count),
        where,
        lambda: etag,
        count,
        total=table.num_rows,
        lineage={
            "bq_modified": table.modified.isoformat() if table.modified else None,
            "bq_read_api": "rest" if read_client is None else "storage",
        },
    )


def _read_client() -> Any | None:
    """A BigQuery Storage Read API client, or None to read through REST: the package is not
    installed, or ``BIGQUERY_EMULATOR_HOST`` names an emulator and no gRPC endpoint is given
    (never Google's real endpoint then)."""
    try:
        from google.cloud import bigquery_storage
    except ImportError:
        return None
    emulator = os.environ.get("BIGQUERY_STORAGE_EMULATOR_HOST")  # ours: the library has none
    if emulator:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        # The limits of the library's own channel: a page of long lists exceeds gRPC's 4 MiB.
        channel = grpc.insecure_channel(
            emulator,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        return bigquery_storage.BigQueryReadClient(  # type: ignore[no-untyped-call]
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        return None
    return bigquery_storage.BigQueryReadClient()  # type: ignore[no-untyped-call]
