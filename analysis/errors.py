"""Errors of the analysis package.

AnalysisError
 ├── ArchiveError         the log archive is missing, empty or unreadable
 └── BigQueryError        the BigQuery job failed or the table reference is invalid
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base of every error raised by the analysis package."""


class ArchiveError(AnalysisError):
    """The archive folder does not exist, holds no ``*.json`` file, or a file cannot be read."""


class BigQueryError(AnalysisError):
    """A BigQuery table reference is malformed or the query job failed."""
