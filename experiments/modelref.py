"""Model references in MLflow's URI forms: ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from experiments.errors import ModelRefError

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_REF = re.compile(
    rf"^models:/(?P<name>{_NAME})(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z_][A-Za-z0-9_\-]*))$"
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference to a registered model version, pinned (``version``) or through an ``alias``."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """Parse ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; raise ModelRefError otherwise."""
        m = _REF.match(uri)
        if m is None:
            raise ModelRefError(
                f"'{uri}' is not a model reference: use models:/NAME/VERSION or models:/NAME@ALIAS"
            )
        return cls(m["name"], m["version"], m["alias"])

    def __str__(self) -> str:
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}@{self.alias}"


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A resolved model version: what results are stored and cached under."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}"
