"""Model registry access: MLflow aliases and tags, and the aliases the gateway reads.

Importing this package does not import mlflow (``MlflowRegistry`` imports it when built).
"""

from registry.aliases import (
    AliasMove,
    alias_history,
    promotions_of,
    rollback_alias,
    rollback_target,
    set_alias,
)
from registry.errors import AliasError, RegistryError, RegistryUnavailable
from registry.evidence import Evidence
from registry.mlflow import DatasetRef, MlflowRegistry, ModelRegistry, RegisteredVersion, RunInfo
from registry.sync import promote, sync_aliases

__all__ = [
    "AliasError",
    "AliasMove",
    "DatasetRef",
    "Evidence",
    "MlflowRegistry",
    "ModelRegistry",
    "RegisteredVersion",
    "RegistryError",
    "RegistryUnavailable",
    "RunInfo",
    "alias_history",
    "promote",
    "promotions_of",
    "rollback_alias",
    "rollback_target",
    "set_alias",
    "sync_aliases",
]
