"""Keep the gateway's aliases (Postgres) and MLflow's aliases in agreement.

MLflow is where ML engineers promote; the gateway serves from ``model_aliases`` because it must
never call MLflow on the request path. An alias may only point at a version whose results are
loaded and active, otherwise the gateway would have nothing to serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from experiments import ModelVersion
from experiments.store import read_aliases
from registry.aliases import set_alias
from registry.errors import AliasError, RegistryUnavailable
from registry.evidence import TAG_PREFIX, Evidence
from registry.mlflow import ModelRegistry


@dataclass(slots=True)
class SyncReport:
    """What ``sync_aliases`` changed and what it left alone, and why."""

    moved: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def _active(conn: asyncpg.Connection | asyncpg.Pool, model: str, version: str) -> bool:
    status = await conn.fetchval(
        "SELECT status FROM model_versions WHERE model = $1 AND version = $2", model, version
    )
    return bool(status == "active")


async def promote(
    pool: asyncpg.Pool,
    registry: ModelRegistry | None,
    model: str,
    alias: str,
    version: str,
    *,
    evidence: Evidence | None = None,
) -> None:
    """Point ``models:/model@alias`` at ``version`` in Postgres, then in MLflow (if given).

    Refuses a version whose results are not active. Postgres goes first, with the ``evidence``
    in the same transaction as the move; then MLflow's alias and the ``abgate.promotion.*``
    tags (replacing those of an earlier promotion of this version). If MLflow fails, the error
    says what is left to do.
    """
    if not await _active(pool, model, version):
        raise AliasError(
            f"models:/{model}/{version} has no active results: load them with "
            "`abgate batch load` (or `abgate batch activate`) before pointing an alias at it"
        )
    await set_alias(pool, model, alias, version, evidence=evidence.to_dict() if evidence else None)
    if registry is None:
        return
    try:
        await registry.set_alias(model, alias, version)
        if evidence is not None:
            await registry.set_tags(
                ModelVersion(model, version), evidence.tags(), replace_prefix=TAG_PREFIX
            )
    except RegistryUnavailable as exc:
        raise RegistryUnavailable(
            f"{exc} (abgate's alias and history already point at {version}: run the same "
            "promote again once MLflow answers, or `abgate registry sync`)"
        ) from exc


async def sync_aliases(pool: asyncpg.Pool, registry: ModelRegistry, model: str) -> SyncReport:
    """Copy MLflow's aliases of ``model`` into ``model_aliases`` (active versions only)."""
    report = SyncReport()
    current = {alias: v for (_, alias), v in (await read_aliases(pool, model)).items()}
    for alias, version in sorted((await registry.aliases(model)).items()):
        label = f"models:/{model}@{alias} -> {version}"
        if current.get(alias) == version:
            report.unchanged.append(label)
        elif not await _active(pool, model, version):
            report.skipped.append(f"{label}: version {version} has no active results in abgate")
        else:
            await set_alias(pool, model, alias, version)
            report.moved.append(label)
    return report
