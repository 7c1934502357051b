"""Errors of the batch package.

BatchError
 ├── LoadError          the input is invalid: names the file and the row (or line) and the field
 ├── SourceError        the input cannot be read (missing file, unknown format, cloud client missing)
 ├── LoadConflict       another load of the same version runs, or the version is already active
 ├── VersionError       a version command cannot run: unknown version, nothing staged
 │    └── VersionInUse  drop refused: an alias, a surface or a running experiment serves it
 ├── PredictError       the model's output breaks the contract (names the chunk and the row)
 └── WarmError          a warm-up stopped (Redis refused a write or went away, Postgres failed);
                        says how many keys were written
"""

from __future__ import annotations


class BatchError(Exception):
    """Base of every error raised by the batch package."""


class LoadError(BatchError):
    """A results file cannot be loaded; the message names the file and the row or line."""

    def __init__(self, file: str, line: int | None, message: str, *, label: str = "") -> None:
        self.file, self.line = file, line
        if line is None:
            where = file
        elif label:
            where = f"{file}: {label} {line}"
        else:
            where = f"{file}:{line}"
        super().__init__(f"{where}: {message}")


class SourceError(BatchError):
    """An input cannot be opened or read."""

    @classmethod
    def from_client(cls, uri: str, exc: Exception) -> SourceError:
        """A client library's error (no bucket, Forbidden, transport...) naming ``uri``."""
        return cls(f"{uri}: {type(exc).__name__}: {exc}")


class LoadConflict(BatchError):
    """The load would collide with another load or replace an immutable active version."""


class VersionError(BatchError):
    """A version command cannot run as asked."""


class VersionInUse(VersionError):
    """The version serves traffic (alias, surface default or running experiment)."""


class PredictError(BatchError):
    """The model's predictions do not follow the output contract."""


class WarmError(BatchError):
    """A warm-up stopped; ``keys`` were written (and confirmed by Redis) before it did."""

    def __init__(self, message: str, keys: int) -> None:
        super().__init__(message)
        self.keys = keys
