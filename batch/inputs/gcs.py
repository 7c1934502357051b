"""``gs://`` inputs through google-cloud-storage (the ``gcp`` extra).

- ``gs://BUCKET/OBJECT`` streams the object (``Blob.open``, ranged reads) into the same readers
  as local files (``batch.inputs.formats``). Credentials and project come from the environment
  (ADC); the ``STORAGE_EMULATOR_HOST`` variable points the client at an emulator. Lineage: the
  object's generation and md5 (or crc32c) as GCS computed them, so the object is not read twice.
- ``gs://BUCKET/FOLDER/`` (or ``gs://BUCKET/FOLDER`` when no object has that name) is a folder
  of Parquet parts, read as one input by the same code as a local folder
  (``batch.inputs.parts.open_parts``): the parts are the ``.parquet``/``.pq`` objects listed
  right under the prefix (``delimiter="/"``: deeper "folders" are not read), minus ``_*`` and
  ``.*``, in name order, each streamed like an object. Lineage: ``gcs-md5-set:`` +
  ``parts_digest`` over the parts' base names and md5s from the listing (``gcs-crc32c-set:``
  with crc32cs when a part has no md5), ``gcs_parts`` and ``gcs_max_generation``; each part is
  read at the generation listed.
- Client errors (no bucket, no object, Forbidden, transport) are SourceErrors naming the URI,
  or the part, when they happen during the load.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import SourceError
from batch.frames import Where
from batch.inputs.formats import format_of, parquet_batches, stream_batches
from batch.inputs.input import Input, RowCount
from batch.inputs.parts import Part, is_part, open_parts, parts_digest

CHUNK = 8 << 20  # bytes per ranged read of an object


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
        raise SourceError.from_client(uri, exc) from None
    if not name or name.endswith("/"):
        return _open_folder(client, uri, bucket_name, name, rename, batch_rows)
    blob = client.bucket(bucket_name).blob(name)
    try:
        blob.reload()
    except NotFound:
        # Spark's output.parquet is a folder: gs://b/output.parquet/part-*.parquet objects.
        return _open_folder(client, uri, bucket_name, name + "/", rename, batch_rows)
    except Exception as exc:  # google.api_core errors: Forbidden, transport errors
        raise SourceError.from_client(uri, exc) from None
    return _open_object(blob, uri, name, rename, batch_rows)


def _open_object(
    blob: Any, uri: str, name: str, rename: Mapping[str, str], batch_rows: int | None
) -> Input:
    """One object, hashed by the md5 (or crc32c) GCS computed."""
    fmt = format_of(name)
    # Before any read: a download resets the blob's generation and hashes to its headers'.
    digest = f"md5:{blob.md5_hash}" if blob.md5_hash else f"crc32c:{blob.crc32c}"
    lineage: dict[str, object] = {"gcs_generation": str(blob.generation)}
    f = _ObjectReader(blob, uri)
    count = RowCount()
    if fmt == "parquet":
        where = Where(uri, "row")
        pf = pq.ParquetFile(f, pre_buffer=False)
        batches = parquet_batches(pf, where, rename, batch_rows, count)
        total, position = pf.metadata.num_rows, None
    else:
        where = Where(uri, "line")
        batches = stream_batches(f, fmt, where, rename, count)
        total, position = blob.size, f.tell
    return Input(
        uri,
        fmt,
        batches,
        where,
        lambda: digest,
        count,
        total=total,
        position=position,
        lineage=lineage,
    )


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
        raise SourceError.from_client(uri, exc) from None
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
    return open_parts(uri, parts, rename, batch_rows, lambda: digest, lineage)


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
            raise SourceError.from_client(self._uri, exc) from None

    def seek(self, pos: int, whence: int = 0) -> int:
        try:
            return self._f.seek(pos, whence)
        except Exception as exc:  # seek reloads the blob when its size is unknown
            raise SourceError.from_client(self._uri, exc) from None

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
