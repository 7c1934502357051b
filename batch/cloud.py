"""``gs://`` and ``bq://`` inputs through the Google client libraries (the ``gcp`` extra).

- ``gs://BUCKET/OBJECT`` streams the object (``Blob.open``, ranged reads) into the same readers
  as local files. Credentials and project come from the environment (ADC); the
  ``STORAGE_EMULATOR_HOST`` variable points the client at an emulator. Lineage: the object's
  generation and md5 (or crc32c) as GCS computed them, so the object is not read twice.
- ``gs://BUCKET/FOLDER/`` (or ``gs://BUCKET/FOLDER`` when no object has that name) is a folder
  of Parquet parts, read as one input by the same code as a local folder
  (``parts.open_parts``): the parts are the ``.parquet``/``.pq`` objects listed right under
  the prefix (``delimiter="/"``: deeper "folders" are not read), minus ``_*`` and ``.*``, in
  name order, each streamed like an object. Lineage: ``gcs-md5-set:`` + ``parts_digest`` over
  the parts' base names and md5s from the listing (``gcs-crc32c-set:`` with crc32cs when a
  part has no md5), ``gcs_parts`` and ``gcs_max_generation``; each part is read at the
  generation listed.
- Client errors (no bucket, no object, Forbidden, transport) are SourceErrors naming the URI,
  or the part, when they happen during the load.
- ``bq://PROJECT.DATASET.TABLE`` is read as Arrow record batches through the BigQuery Storage
  Read API (gRPC) when google-cloud-bigquery-storage is installed (the gcp extra installs it),
  else through the REST ``tabledata.list`` API (JSON pages converted to Arrow, many times
  slower); both by ``list_rows(...).to_arrow_iterable``. Lineage: the table's etag and
  modification time, and ``bq_read_api``: ``storage`` or ``rest``. The table follows the same
  column contract (long or wide); a long table must be ordered by unit (write it with
  ``ORDER BY unit_id, rank``). The Storage Read API reads a long table in one stream
  (``max_stream_count=1``: several interleave their rows, which would split its units) and a
  wide table in up to ``STREAMS`` (its rows may come in any order: ``results_sha256`` ignores
  the order, so loading the same version again is still a no-op). Its pages are sliced
  (without copies) into chunks of ``batch_rows``, or of the Parquet defaults. Client errors
  while reading (PermissionDenied: the Storage Read API needs ``bigquery.readsessions.create``)
  are SourceErrors naming the URI.
- Emulators: ``BIGQUERY_EMULATOR_HOST`` (read by the client library) points the REST client at
  one, with anonymous credentials. ``BIGQUERY_STORAGE_EMULATOR_HOST=HOST:PORT`` (ours: the
  library has no such variable) points the Storage Read client at the emulator's gRPC port,
  over an insecure channel; with ``BIGQUERY_EMULATOR_HOST`` alone the table is read through
  REST, never through Google's own gRPC endpoint.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import SourceError
from batch.frames import Where
from batch.parts import Part, is_part, open_parts, parts_digest
from batch.sources import (
    LONG_ROWS,
    WIDE_ROWS,
    Input,
    _fmt,
    arrow_batches,
    open_parquet,
    open_stream,
)

CHUNK = 8 << 20  # bytes per ranged read of an object
STREAMS = 4  # Storage Read streams of a wide table, read in parallel


def open_gcs(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
    """A ``gs://bucket/object`` results file, or a ``gs://bucket/folder/`` of Parquet parts
    (also without the trailing slash, when no object has that exact name)."""
    try:
        from google.api_core.exceptions import NotFound
        from google.cloud import storage
    except ImportError:
        raise SourceError(f"{uri}: install the gcp extra (pip install 'abgate[gcp]')") from None
    bucket_name, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket_name:
        raise SourceError(f"{uri}: use gs://BUCKET/OBJECT or gs://BUCKET/FOLDER/")
    try:
        client = storage.Client()
    except Exception as exc:  # google.auth: no credentials, no project
        raise _source_error(uri, exc) from None
    if not name or name.endswith("/"):
        return _open_folder(client, uri, bucket_name, name, rename, batch_rows)
    blob = client.bucket(bucket_name).blob(name)
    try:
        blob.reload()
    except NotFound:
        # Spark's output.parquet is a folder: gs://b/output.parquet/part-*.parquet objects.
        return _open_folder(client, uri, bucket_name, name + "/", rename, batch_rows)
    except Exception as exc:  # google.api_core errors: Forbidden, transport errors
        raise _source_error(uri, exc) from None
    fmt = _fmt(name)
    # Before any read: a download resets the blob's generation and hashes to its headers'.
    digest = f"md5:{blob.md5_hash}" if blob.md5_hash else f"crc32c:{blob.crc32c}"
    lineage: dict[str, object] = {"gcs_generation": str(blob.generation)}
    f = _ObjectReader(blob, uri)
    if fmt == "parquet":
        inp = open_parquet(pq.ParquetFile(f, pre_buffer=False), uri, rename, batch_rows)
    else:
        inp = open_stream(f, fmt, uri, rename)
        inp.total, inp.measure, inp.done = blob.size, "bytes", lambda: f.tell()
    inp.lineage = lineage
    inp._hash = lambda: digest
    return inp


def _open_folder(
    client: Any,
    uri: str,
    bucket_name: str,
    prefix: str,
    rename: Mapping[str, str],
    batch_rows: int | None,
) -> Input:
    """The Parquet parts right under ``prefix`` (not those in deeper "folders") as one Input,
    hashed by the md5s (or crc32cs) GCS computed: ``gcs-md5-set:`` + ``parts_digest``."""
    listing = client.list_blobs(bucket_name, prefix=prefix, delimiter="/")
    try:
        blobs = list(listing)
    except Exception as exc:  # google.api_core errors: NotFound (the bucket), Forbidden
        raise _source_error(uri, exc) from None
    if not blobs and not listing.prefixes:
        raise SourceError(
            f"{uri}: no such object or folder (nothing under gs://{bucket_name}/{prefix})"
        )
    blobs = sorted((b for b in blobs if is_part(b.name.removeprefix(prefix))), key=lambda b: b.name)
    # Hashes and generations from the listing, before any read (as above). Reads go to the
    # parts' mediaLinks, which name the listed generations: the data is the data hashed here.
    kind = "md5" if all(b.md5_hash for b in blobs) else "crc32c"  # composite objects: no md5
    digest = f"gcs-{kind}-set:" + parts_digest(
        (b.name.removeprefix(prefix), b.md5_hash if kind == "md5" else b.crc32c) for b in blobs
    )
    lineage: dict[str, object] = {
        "gcs_parts": len(blobs),
        "gcs_max_generation": str(max((b.generation for b in blobs), default="")),
    }
    parts = [
        Part(f"gs://{bucket_name}/{b.name}", functools.partial(_part_file, b, bucket_name))
        for b in blobs
    ]
    inp = open_parts(uri, parts, rename, batch_rows)
    inp._hash = lambda: digest
    inp.lineage = lineage
    return inp


def _part_file(blob: Any, bucket_name: str) -> pa.NativeFile:
    return pa.PythonFile(_ObjectReader(blob, f"gs://{bucket_name}/{blob.name}"), mode="r")


class _ObjectReader:
    """``Blob.open("rb")``, in 8 MiB ranged reads, whose client errors (Forbidden, transport)
    are SourceErrors naming the object; pyarrow passes them through to the caller."""

    def __init__(self, blob: Any, uri: str) -> None:
        self._f: IO[bytes] = blob.open("rb", chunk_size=CHUNK)
        self._uri = uri

    def read(self, n: int = -1) -> bytes:
        try:
            return self._f.read(n)
        except Exception as exc:  # google.api_core and requests errors
            raise _source_error(self._uri, exc) from None

    def seek(self, pos: int, whence: int = 0) -> int:
        try:
            return self._f.seek(pos, whence)
        except Exception as exc:  # seek reloads the blob when its size is unknown
            raise _source_error(self._uri, exc) from None

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def _source_error(uri: str, exc: Exception) -> SourceError:
    return SourceError(f"{uri}: {type(exc).__name__}: {exc}")


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

        client = bigquery.Client(project=ref.split(".")[0], credentials=AnonymousCredentials())
    else:
        client = bigquery.Client(project=ref.split(".")[0])
    try:
        table = client.get_table(ref)
        read_client = _read_client()
    except Exception as exc:  # google.api_core errors; google.auth: no credentials
        raise _source_error(uri, exc) from None
    names = [rename.get(f.name, f.name) for f in table.schema]
    where = Where(uri, "row")
    inp = Input(uri, "bigquery", iter(()), where, table.num_rows, "rows", lambda: 0)
    inp.done = lambda: inp.rows_read

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
        size = batch_rows or (LONG_ROWS if "item_id" in names else WIDE_ROWS)
        for rb in rows:  # the server sizes its pages; slices (no copies) bound the chunks
            for start in range(0, rb.num_rows, size):
                yield rb.slice(start, size)

    def record_batches() -> Iterator[pa.RecordBatch]:
        try:
            for rb in pages():
                yield rb.rename_columns(names)
        except Exception as exc:  # google.api_core errors: Forbidden, transport errors
            raise _source_error(uri, exc) from None

    inp.batches = arrow_batches(record_batches(), names, where, inp)
    inp.lineage = {
        "bq_modified": table.modified.isoformat() if table.modified else None,
        "bq_read_api": "rest" if read_client is None else "storage",
    }
    inp._hash = lambda: f"bq-etag:{table.etag}"
    return inp


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
        return bigquery_storage.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        return None
    return bigquery_storage.BigQueryReadClient()
