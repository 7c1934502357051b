"""Every error the experiments package raises, core and store alike.

ExperimentsError
 ├── ConfigError              an experiment or surfaces file is invalid (names file, line, field)
 ├── ModelRefError            a model reference is not ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
 ├── TargetingError           a targeting expression is invalid (names the column)
 ├── SurfaceNotFound          a request names a surface the configuration does not declare
 ├── VariantNotFound          an experiment has no variant of that key
 └── StoreError               the store refused or could not do what was asked
      ├── ExperimentNotFound  no experiment (or version) with that key
      ├── LifecycleError      the transition is not allowed from the current status
      ├── ReshuffleRefused    the change would move units between variants (needs --force)
      ├── MissingModelError   a variant's model version has no loaded results/default list
      ├── KeyChangeRefused    an API key change cannot be made (unknown name, duplicate, bad rate)
      └── StoreUnavailable    Postgres could not be reached

``ModelRefError`` and ``TargetingError`` are also ``ValueError``s, so pydantic validators turn
them into located configuration issues.
"""

from __future__ import annotations

from collections.abc import Iterable
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


class TargetingError(ExperimentsError, ValueError):
    """A targeting expression is invalid; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}")


class SurfaceNotFound(ExperimentsError):
    """A request names a surface that the configuration does not declare."""

    def __init__(self, surface: str, known: Iterable[str]) -> None:
        self.surface = surface
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"surface '{surface}' is not declared (surfaces: {names})")


class VariantNotFound(ExperimentsError):
    """An experiment has no variant with that key."""

    def __init__(self, experiment: str, variant: str, known: Iterable[str]) -> None:
        self.experiment = experiment
        self.variant = variant
        super().__init__(
            f"experiment '{experiment}' has no variant '{variant}' (variants: {', '.join(known)})"
        )


class StoreError(ExperimentsError):
    """The experiment store refused or could not perform an operation."""


class ExperimentNotFound(StoreError):
    """No experiment (or no such version) with that key."""


class LifecycleError(StoreError):
    """The lifecycle transition is not allowed from the current status."""


class ReshuffleRefused(StoreError):
    """The change would move units between variants of a started experiment."""


class MissingModelError(StoreError):
    """A model version named by the experiment has no loaded results or no default list."""

    def __init__(self, key: str, missing: list[str]) -> None:
        self.key = key
        self.missing = missing
        super().__init__(f"experiment '{key}' cannot run: " + "; ".join(missing))


class KeyChangeRefused(StoreError):
    """An API key change that cannot be made (unknown name, duplicate, bad surfaces or rate)."""


class StoreUnavailable(StoreError):
    """Postgres could not be reached or answered with an error."""
