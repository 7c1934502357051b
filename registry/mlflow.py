"""The MLflow model registry behind a small async interface.

mlflow is imported when an ``MlflowRegistry`` is constructed, never when this module is, so the
gateway (which never needs MLflow) does not pay for it. Every MLflow call blocks, so each one runs
in a worker thread; MLflow errors become ``RegistryUnavailable`` naming the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from experiments import ModelRef, ModelVersion
from registry.errors import RegistryUnavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """A resolved registry entry: the version, the run that produced it, and its tags."""

    version: ModelVersion
    run_id: str | None
    source: str
    tags: Mapping[str, str]
    aliases: tuple[str, ...]


class ModelRegistry(Protocol):
    """What batch and the CLI need from a model registry."""

    async def resolve(self, ref: ModelRef) -> RegisteredVersion:
        """The version ``models:/name@alias`` or ``models:/name/version`` names."""
        ...

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point the registry's alias at ``version``."""
        ...

    async def aliases(self, name: str) -> dict[str, str]:
        """``alias -> version`` of a registered model."""
        ...

    async def load_pyfunc(self, mv: ModelVersion) -> Any:
        """The version's ``mlflow.pyfunc`` model (downloaded and loaded in a worker thread)."""
        import mlflow.pyfunc

        return await self._call(
            f"pyfunc.load_model({mv})", lambda: mlflow.pyfunc.load_model(str(mv))
        )

    async def set_tags(self, mv: ModelVersion, tags: Mapping[str, str]) -> None:
        """Write tags on a model version."""
        ...


class MlflowRegistry:
    """``ModelRegistry`` over ``mlflow.MlflowClient`` (any tracking/registry URI, e.g. sqlite)."""

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        if tracking_uri:
            # pyfunc.load_model resolves models:/ URIs through the process-wide URIs.
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(registry_uri or tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return await asyncio.to_thread(fn)
        except MlflowException as exc:
            raise RegistryUnavailable(f"mlflow {what}: {exc.message}") from exc
        except OSError as exc:
            raise RegistryUnavailable(f"mlflow {what}: {type(exc).__name__}: {exc}") from exc

    async def resolve(self, ref: ModelRef) -> RegisteredVersion:
        """The version a reference names, with its run id, source and tags."""
        c = self._client
        if ref.version is not None:
            mv = await self._call(
                f"get_model_version({ref})", lambda: c.get_model_version(ref.name, ref.version)
            )
        else:
            mv = await self._call(
                f"get_model_version_by_alias({ref})",
                lambda: c.get_model_version_by_alias(ref.name, str(ref.alias)),
            )
        return RegisteredVersion(
            ModelVersion(mv.name, str(mv.version)),
            mv.run_id,
            mv.source,
            dict(mv.tags or {}),
            tuple(getattr(mv, "aliases", ()) or ()),
        )

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        """``set_registered_model_alias``."""
        c = self._client
        await self._call(
            f"set_registered_model_alias({name}@{alias})",
            lambda: c.set_registered_model_alias(name, alias, version),
        )

    async def aliases(self, name: str) -> dict[str, str]:
        """Aliases of a registered model."""
        c = self._client
        rm = await self._call(f"get_registered_model({name})", lambda: c.get_registered_model(name))
        return {a: str(v) for a, v in (rm.aliases or {}).items()}

    async def load_pyfunc(self, mv: ModelVersion) -> Any:
        """The version's ``mlflow.pyfunc`` model (downloaded and loaded in a worker thread)."""
        import mlflow.pyfunc

        return await self._call(
            f"pyfunc.load_model({mv})", lambda: mlflow.pyfunc.load_model(str(mv))
        )

    async def set_tags(self, mv: ModelVersion, tags: Mapping[str, str]) -> None:
        """``set_model_version_tag`` for each tag."""
        c = self._client

        def write() -> None:
            for k, v in tags.items():
                c.set_model_version_tag(mv.name, mv.version, k, v)

        await self._call(f"set_model_version_tag({mv})", write)
