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
class DatasetRef:
    """A dataset logged as a run input (``mlflow.data``): what it is and where it came from."""

    name: str
    digest: str
    source_type: str
    source: str  # the source as MLflow stores it (JSON, e.g. {"uri": "file:///..."})
    context: str | None  # "training", "inference", ... (the mlflow.data.context input tag)
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """An MLflow run, as lineage shows it."""

    run_id: str
    name: str | None
    experiment_id: str
    status: str
    start_time: int | None  # ms since the epoch, as MLflow keeps it
    datasets: tuple[DatasetRef, ...]
    params: Mapping[str, str]
    tags: Mapping[str, str]


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
        ...

    async def set_tags(
        self, mv: ModelVersion, tags: Mapping[str, str], *, replace_prefix: str | None = None
    ) -> None:
        """Write tags on a model version (removing other tags under ``replace_prefix``)."""
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
            number = ref.version
            mv = await self._call(
                f"get_model_version({ref})", lambda: c.get_model_version(ref.name, number)
            )
        else:
            mv = await self._call(
                f"get_model_version_by_alias({ref})",
                lambda: c.get_model_version_by_alias(ref.name, str(ref.alias)),
            )
        return RegisteredVersion(
            ModelVersion(mv.name, str(mv.version)),
            mv.run_id,
            mv.source or "",  # typed optional by MLflow; set on every version it creates
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

    async def set_tags(
        self, mv: ModelVersion, tags: Mapping[str, str], *, replace_prefix: str | None = None
    ) -> None:
        """``set_model_version_tag`` for each tag.

        With ``replace_prefix``, tags under that prefix that ``tags`` does not name are deleted
        first, so a set of tags written together (one promotion's evidence) never mixes with an
        older set.
        """
        c = self._client

        def write() -> None:
            if replace_prefix is not None:
                old = c.get_model_version(mv.name, mv.version).tags or {}
                for k in old:
                    if k.startswith(replace_prefix) and k not in tags:
                        c.delete_model_version_tag(mv.name, mv.version, k)
            for k, v in tags.items():
                c.set_model_version_tag(mv.name, mv.version, k, v)

        await self._call(f"set_model_version_tag({mv})", write)

    async def run(self, run_id: str) -> RunInfo:
        """A run with its dataset inputs, params and tags."""
        c = self._client
        r = await self._call(f"get_run({run_id})", lambda: c.get_run(run_id))
        datasets = []
        for di in (r.inputs.dataset_inputs if r.inputs else None) or []:
            tags = {t.key: t.value for t in di.tags or []}
            d = di.dataset
            datasets.append(
                DatasetRef(
                    d.name,
                    d.digest,
                    d.source_type,
                    d.source,
                    tags.pop("mlflow.data.context", None),
                    tags,
                )
            )
        return RunInfo(
            r.info.run_id,
            r.info.run_name,
            str(r.info.experiment_id),
            r.info.status,
            r.info.start_time,
            tuple(datasets),
            dict(r.data.params),
            {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
        )

    async def start_inference_run(
        self,
        rv: RegisteredVersion,
        dataset: Any,
        *,
        params: Mapping[str, str],
        tags: Mapping[str, str],
        input_tags: Mapping[str, str],
    ) -> str:
        """Open a run that scores with ``rv``, with ``dataset`` (an ``mlflow.data`` Dataset)
        logged as its ``inference`` input; returns the run id.

        The run goes to the MLflow experiment of the version's training run (the default
        experiment when the version has no run), so both show side by side.
        """
        from mlflow.entities import DatasetInput, InputTag

        c = self._client

        def start() -> str:
            experiment_id = c.get_run(rv.run_id).info.experiment_id if rv.run_id else "0"
            run = c.create_run(
                experiment_id,
                run_name=f"abgate predict {rv.version.name}/{rv.version.version}",
                tags=dict(tags),
            )
            run_id: str = run.info.run_id
            for k, v in params.items():
                c.log_param(run_id, k, v)
            itags = [InputTag("mlflow.data.context", "inference")]
            itags += [InputTag(k, v) for k, v in input_tags.items()]
            # Dataset._to_mlflow_entity is what mlflow.log_input itself calls; the fluent API
            # would need a process-wide active run.
            c.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), itags)])
            return run_id

        return await self._call(f"create_run(predict {rv.version})", start)

    async def end_run(self, run_id: str, *, failed: bool, tags: Mapping[str, str]) -> None:
        """Tag a run and end it (FINISHED, or FAILED)."""
        c = self._client

        def end() -> None:
            for k, v in tags.items():
                c.set_tag(run_id, k, v)
            c.set_terminated(run_id, "FAILED" if failed else "FINISHED")

        await self._call(f"set_terminated({run_id})", end)
