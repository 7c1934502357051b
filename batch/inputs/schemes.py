"""``open_input``: the opener of each URI scheme, in one table.

A URI ``SCHEME://...`` goes to ``OPENERS[SCHEME]``; anything else is a local path (a file, a
folder of Parquet parts, or a pipe). Each opener takes the URI, the column renames (input name
-> contract name) and the rows per batch (None: the format's default), and returns an Input
built whole. A new scheme (say ``s3://``) is one module with its opener and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from batch.errors import SourceError
from batch.inputs.bigquery import open_bigquery
from batch.inputs.gcs import open_gcs
from batch.inputs.input import Input
from batch.inputs.local import open_local

Opener = Callable[[str, Mapping[str, str], int | None], Input]

OPENERS: dict[str, Opener] = {
    "gs": open_gcs,
    "bq": open_bigquery,
}


def open_input(
    uri: str | Path, *, columns: Mapping[str, str] | None = None, batch_rows: int | None = None
) -> Input:
    """Open a local file or folder, ``gs://bucket/object``, ``gs://bucket/folder/`` or
    ``bq://project.dataset.table``; ``columns`` maps contract names to the input's own
    (``{"unit_id": "user_id"}``)."""
    text = str(uri)
    rename = {v: k for k, v in (columns or {}).items()}
    scheme, sep, _ = text.partition("://")
    if not sep:
        return open_local(text, rename, batch_rows)
    opener = OPENERS.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in OPENERS)
        raise SourceError(f"{text}: unknown scheme {scheme}://; use {known} or a local path")
    return opener(text, rename, batch_rows)
