"""Errors of the analysis package.

AnalysisError
 ├── ArchiveError         the log archive is missing, empty or unreadable
 │    └── MalformedArchive  --strict: the archive holds lines the report would skip
 ├── BigQueryError        the BigQuery job failed or the table reference is invalid
 ├── NoExposures          the source holds no exposure of the experiment in the window
 └── BadSegment           ``--by`` names something that cannot be an attribute
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base of every error raised by the analysis package."""


class ArchiveError(AnalysisError):
    """The archive folder does not exist, holds no ``*.json`` file, or a file cannot be read."""


class MalformedArchive(ArchiveError):
    """``--strict``: the archive holds torn lines or incomplete records (the message names the
    first file and line); without ``--strict`` the report skips and counts them."""


class BigQueryError(AnalysisError):
    """A BigQuery table reference is malformed or the query job failed."""


class NoExposures(AnalysisError):
    """No exposure of the experiment in the report's window: there is nothing to report on.

    A report of zero units would show dashes and a passing SRM check; this says what was read
    instead, so a wrong key, archive or window is seen at once.
    """


class BadSegment(AnalysisError):
    """``--by`` is not a plain attribute name (letters, digits, ``_`` and ``-``)."""
