"""Errors of the experiments package.

ExperimentsError
 ├── ConfigError          an experiment or surfaces file is invalid (names file, line, field)
 └── ModelRefError        a model reference is not ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
"""

from __future__ import annotations

from dataclasses import dataclass


class ExperimentsError(Exception):
    """Base of every error raised by the experiments package."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file, located as precisely as we can."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" field '{self.field}'" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(ExperimentsError):
    """One or more configuration files are invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class ModelRefError(ExperimentsError, ValueError):
    """A model reference does not follow the MLflow ``models:/`` URI forms we accept."""
