"""Lineage of a load, as MLflow model version tags.

Which data produced these results: the input's URI and content hash, row counts, the hash of
the results themselves and when they were loaded. The same values are in
``model_versions.metadata`` (``abgate batch versions --json``).
"""

from __future__ import annotations

from collections.abc import Mapping

TAG_PREFIX = "abgate.results."
_KEYS = (
    "source",
    "format",
    "input_hash",
    "input_rows",
    "units",
    "items",
    "default_items",
    "results_sha256",
    "loaded_at",
    "load_id",
    "top_k",
    "top_k_requested",
    "predict_run_id",
)


def lineage_tags(metadata: Mapping[str, object]) -> dict[str, str]:
    """``abgate.results.*`` tags of a load's metadata (MLflow tag values are strings)."""
    return {TAG_PREFIX + k: str(metadata[k]) for k in _KEYS if metadata.get(k) not in (None, "")}
