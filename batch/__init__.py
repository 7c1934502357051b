"""Producing and loading precomputed results: load, activate, warm the cache, batch inference.

mlflow is imported only by ``batch.predict`` and ``batch.example_model`` (import them directly).
"""

from batch.errors import (
    BatchError,
    LoadConflict,
    LoadError,
    PredictError,
    SourceError,
    VersionError,
    VersionInUse,
    WarmError,
)
from batch.frames import DEFAULT_UNIT, UnitBatch
from batch.inputs import Input, open_input, rows_input
from batch.load import Limits, LoadSummary, Progress, load_results, read_results
from batch.serving import serving_refs
from batch.versions import (
    VersionInfo,
    activate,
    drop,
    in_use,
    list_versions,
    retention_candidates,
    rollback,
)
from batch.warm import WarmSummary, recent_units, warm
from registry import set_alias

__all__ = [
    "DEFAULT_UNIT",
    "BatchError",
    "Input",
    "Limits",
    "LoadConflict",
    "LoadError",
    "LoadSummary",
    "PredictError",
    "Progress",
    "SourceError",
    "UnitBatch",
    "VersionError",
    "VersionInUse",
    "VersionInfo",
    "WarmError",
    "WarmSummary",
    "activate",
    "drop",
    "in_use",
    "list_versions",
    "load_results",
    "open_input",
    "read_results",
    "recent_units",
    "retention_candidates",
    "rollback",
    "rows_input",
    "serving_refs",
    "set_alias",
    "warm",
]
