"""Inputs of a load, as UnitBatches: local files and folders, ``gs://`` objects and folders,
``bq://`` tables, and Python rows.

Column contract (names can be mapped with ``columns={"unit_id": "user_id", ...}``):

- long, one row per unit-item pair: ``unit_id, item_id, score[, rank]`` (CSV, Parquet, BigQuery).
  A unit's rows are contiguous; they are in rank order unless a ``rank`` column orders them.
- wide, one row per unit: ``unit_id, item_ids: list<string>, scores: list<double>`` (Parquet,
  BigQuery), or ``unit_id, items: list<{id, score}>`` (Parquet, BigQuery, JSON Lines).

The unit ``__default__`` holds the version's default list. Inputs are read in bounded chunks,
so memory does not grow with the input. Each input also reports lineage: its URI, a content
hash (sha256 of the bytes for files; the object's md5 for gs://; the table's etag for bq://).

Modules, imported one way (each only from those below it):

- ``schemes``: ``open_input`` and the table of openers by scheme;
- ``local``, ``gcs``, ``bigquery``, ``rows``: one opener per scheme;
- ``parts``: a folder of Parquet parts (local or gs://) as one input;
- ``formats``: CSV, JSON Lines and Parquet from a file object;
- ``arrow``: record batches in the contract's shapes as UnitBatches;
- ``input``: the ``Input`` record.
"""

from batch.inputs.arrow import wide_lists_batch
from batch.inputs.formats import file_sha256
from batch.inputs.input import Input, RowCount
from batch.inputs.rows import rows_input
from batch.inputs.schemes import OPENERS, open_input

__all__ = [
    "OPENERS",
    "Input",
    "RowCount",
    "file_sha256",
    "open_input",
    "rows_input",
    "wide_lists_batch",
]
