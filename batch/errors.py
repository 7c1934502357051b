"""Errors of the batch package.

BatchError
 └── LoadError        a results file is invalid (names file, line and field)
"""

from __future__ import annotations


class BatchError(Exception):
    """Base of every error raised by the batch package."""


class LoadError(BatchError):
    """A results file cannot be loaded; the message names the file and line."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line = file, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")
