"""Keep the gateway's aliases (Postgres) and MLflow's aliases in agreement.

MLflow is where ML engineers promote; the gateway serves from ``model_aliases`` because it must
never call MLflow on the request path. An alias may only point at a version whose results are
loaded and active, otherwise the gateway would have nothing to serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from registry.aliases import set_alias
from registry.errors import AliasError
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
    return status == "active"


async def promote(
    pool: asyncpg.Pool, registry: ModelRegistry | None, model: str, alias: str, version: str
) -> None:
    """Point ``models:/model@alias`` at ``version`` in Postgres, then in MLflow (if given).

    Refuses a version whose results are not active. Postgres goes first: if MLflow then fails,
    running ``abgate registry sync`` later repairs the registry side from the error message.
    """
    if not await _active(pool, model, version):
        raise AliasError(
            f"models:/{model}/{version} has no active results: load them with "
            "`abgate batch load` (or `abgate batch activate`) before pointing an alias at it"
        )
    await set_alias(pool, model, alias, version)
    if registry is not None:
        await registry.set_alias(model, alias, version)


async def sync_aliases(pool: asyncpg.Pool, registry: ModelRegistry, model: str) -> SyncReport:
    """Copy MLflow's aliases of ``model`` into ``model_aliases`` (active versions only)."""
    report = SyncReport()
    current = {
        r["alias"]: r["version"]
        for r in await pool.fetch(
            "SELECT alias, version FROM model_aliases WHERE model = $1", model
        )
    }
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
