"""Errors of the registry package.

RegistryError
 ├── AliasError           an alias cannot be moved (unknown alias, nothing to roll back to)
 └── RegistryUnavailable  the MLflow registry could not be reached or refused the call
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error raised by the registry package."""


class AliasError(RegistryError):
    """An alias cannot be moved as asked; the message says why and what to do."""


class RegistryUnavailable(RegistryError):
    """The MLflow registry failed; the message names the call and the model."""
