"""Model registry access: MLflow aliases and tags, and the aliases the gateway reads.

Importing this package does not import mlflow (``MlflowRegistry`` imports it when built).
"""

from registry.aliases import (
    AliasMove,
    alias_history,
    aliases_of,
    rollback_alias,
    rollback_target,
    set_alias,
)
from registry.errors import AliasError, RegistryError, RegistryUnavailable
from registry.mlflow import MlflowRegistry, ModelRegistry, RegisteredVersion
from registry.sync import promote, sync_aliases

__all__ = [
    "AliasError",
    "AliasMove",
    "MlflowRegistry",
    "ModelRegistry",
    "RegisteredVersion",
    "RegistryError",
    "RegistryUnavailable",
    "alias_history",
    "aliases_of",
    "promote",
    "rollback_alias",
    "rollback_target",
    "set_alias",
    "sync_aliases",
]
