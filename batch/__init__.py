"""Producing and loading precomputed results."""

from batch.errors import BatchError, LoadError
from batch.load import DEFAULT_UNIT, LoadSummary, load_results, read_results, set_alias

__all__ = [
    "DEFAULT_UNIT",
    "BatchError",
    "LoadError",
    "LoadSummary",
    "load_results",
    "read_results",
    "set_alias",
]
