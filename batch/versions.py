"""Model versions in Postgres: list, activate, roll back, drop, and the retention rule.

A version's results live in one partition of ``results`` (migration 0010). Activating attaches
a staged load in one short transaction; dropping detaches and drops the partition. A version that
serves traffic (an alias points at it, a surface defaults to it, a running experiment routes to
it) is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from batch.errors import VersionError, VersionInUse
from experiments import ModelRef, ModelVersion
from registry import rollback_alias, set_alias

LOCK_TIMEOUT = "10s"  # DETACH waits for running readers; never queue readers behind it for long


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on since Postgres 9.1)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One row of ``abgate batch versions``."""

    model: str
    version: str
    status: str  # active, retired, or staged (loaded, not yet activated)
    units: int
    default_items: int
    aliases: tuple[str, ...]
    activated_at: datetime | None
    bytes: int | None
    metadata: dict[str, object]


async def list_versions(
    conn: asyncpg.Connection | asyncpg.Pool, model: str | None = None
) -> list[VersionInfo]:
    """Every version of ``model`` (or of every model), with staged loads not yet activated."""
    rows = await conn.fetch(
        """SELECT mv.model, mv.version, mv.status, mv.unit_count,
                  jsonb_array_length(mv.default_items) AS defaults, mv.activated_at,
                  mv.metadata::text AS metadata,
                  CASE WHEN to_regclass(quote_ident(mv.results_table)) IS NOT NULL
                       THEN pg_total_relation_size(quote_ident(mv.results_table)) END AS bytes,
                  coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM model_aliases a
                            WHERE a.model = mv.model AND a.version = mv.version), '{}') AS aliases
           FROM model_versions mv WHERE $1::text IS NULL OR mv.model = $1
           UNION ALL
           SELECT l.model, l.version, 'staged', l.unit_count, jsonb_array_length(l.default_items),
                  NULL, l.metadata::text, pg_total_relation_size(quote_ident(l.stage_table)), '{}'
           FROM result_loads l WHERE l.state = 'staged' AND ($1::text IS NULL OR l.model = $1)
           ORDER BY 1, 2""",
        model,
    )
    out = [
        VersionInfo(
            r["model"],
            r["version"],
            r["status"],
            r["unit_count"],
            r["defaults"],
            tuple(r["aliases"]),
            r["activated_at"],
            r["bytes"],
            orjson.loads(r["metadata"]),
        )
        for r in rows
    ]
    return sorted(out, key=lambda v: (v.model, _version_key(v.version), v.status))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


async def activate_load(
    conn: asyncpg.Connection, load_id: int, *, alias: str | None = None
) -> None:
    """Attach a staged load as its version's partition, in one transaction.

    The model's partition is created on first use. A previous load of the same version is
    detached and dropped in the same transaction, so readers see the old list or the new one.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT model, version, stage_table, state, default_items::text AS d, unit_count,"
            " metadata::text AS md FROM result_loads WHERE load_id = $1 FOR UPDATE",
            load_id,
        )
        if row is None or row["state"] != "staged":
            raise VersionError(f"load {load_id} is not staged (state: {row and row['state']})")
        model, version, stage = row["model"], row["version"], row["stage_table"]
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':activate:' || $1))", model
        )
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        parent = await _model_table(conn, model)
        old = await conn.fetchval(
            "SELECT results_table FROM model_versions WHERE model = $1 AND version = $2",
            model,
            version,
        )
        if old and await conn.fetchval("SELECT to_regclass(quote_ident($1))::text", old):
            await conn.execute(f"ALTER TABLE {ident(parent)} DETACH PARTITION {ident(old)}")
            await conn.execute(f"DROP TABLE {ident(old)}")
        await conn.execute(
            f"ALTER TABLE {ident(parent)} ATTACH PARTITION {ident(stage)}"
            f" FOR VALUES IN ({literal(version)})"
        )
        await conn.execute(
            """INSERT INTO model_versions (model, version, status, default_items, unit_count,
                                           metadata, activated_at, results_table)
               VALUES ($1, $2, 'active', $3::jsonb, $4, $5::jsonb, now(), $6)
               ON CONFLICT (model, version) DO UPDATE SET status = 'active',
                 default_items = EXCLUDED.default_items, unit_count = EXCLUDED.unit_count,
                 metadata = EXCLUDED.metadata, activated_at = now(),
                 results_table = EXCLUDED.results_table""",
            model,
            version,
            row["d"],
            row["unit_count"],
            row["md"],
            stage,
        )
        await conn.execute(
            "UPDATE result_loads SET state = 'superseded'"
            " WHERE model = $1 AND version = $2 AND state = 'active'",
            model,
            version,
        )
        await conn.execute(
            "UPDATE result_loads SET state = 'active', activated_at = now() WHERE load_id = $1",
            load_id,
        )
        if alias:
            await set_alias(conn, model, alias, version)


async def _model_table(conn: asyncpg.Connection, model: str) -> str:
    """The model's partition of ``results`` (created and attached when missing)."""
    name: str = await conn.fetchval("SELECT results_model_table($1)", model)
    if not await conn.fetchval("SELECT to_regclass(quote_ident($1)) IS NOT NULL", name):
        # CREATE ... PARTITION OF would lock every reader out of `results`; ATTACH does not.
        await conn.execute(f"CREATE TABLE {ident(name)} (LIKE results) PARTITION BY LIST (version)")
        await conn.execute(
            f"ALTER TABLE results ATTACH PARTITION {ident(name)} FOR VALUES IN ({literal(model)})"
        )
    return name


async def activate(
    pool: asyncpg.Pool, model: str, version: str, *, alias: str | None = None
) -> int:
    """Activate the latest staged load of ``model``/``version``; returns its load id.

    With nothing staged, an active version only has ``alias`` moved to it.
    """
    async with pool.acquire() as conn:
        load_id = await conn.fetchval(
            "SELECT max(load_id) FROM result_loads WHERE model = $1 AND version = $2 AND state = 'staged'",
            model,
            version,
        )
        if load_id is None:
            status = await conn.fetchval(
                "SELECT status FROM model_versions WHERE model = $1 AND version = $2",
                model,
                version,
            )
            if status != "active":
                raise VersionError(
                    f"models:/{model}/{version} has no staged load"
                    + (f" and is {status}" if status else " and was never loaded")
                    + ": load it with `abgate batch load`"
                )
            if alias:
                await set_alias(conn, model, alias, version)
            return 0
        await activate_load(conn, load_id, alias=alias)
        return int(load_id)


async def rollback(pool: asyncpg.Pool, model: str, alias: str) -> tuple[str, str]:
    """Move ``models:/model@alias`` back to the version it pointed at before; ``(from, to)``."""
    async with pool.acquire() as conn, conn.transaction():
        before, after = await rollback_alias(conn, model, alias)
        status = await conn.fetchval(
            "SELECT status FROM model_versions WHERE model = $1 AND version = $2", model, after
        )
        if status != "active":
            raise VersionError(
                f"cannot roll models:/{model}@{alias} back to version {after}: it is "
                f"{status or 'not loaded'}; reload it with `abgate batch load`"
            )
    return before, after


async def in_use(
    conn: asyncpg.Connection | asyncpg.Pool, mv: ModelVersion, refs: Iterable[tuple[str, ModelRef]]
) -> list[str]:
    """Why ``mv`` serves traffic: its aliases, and the ``(label, ref)`` that resolve to it."""
    aliases = {
        r["alias"]: r["version"]
        for r in await conn.fetch(
            "SELECT alias, version FROM model_aliases WHERE model = $1", mv.name
        )
    }
    reasons = [f"alias @{a} points at it" for a, v in sorted(aliases.items()) if v == mv.version]
    for label, ref in refs:
        if ref.name != mv.name:
            continue
        if ref.version == mv.version:
            reasons.append(f"{label} uses {ref}")
        elif ref.alias is not None and aliases.get(ref.alias) == mv.version:
            reasons.append(f"{label} uses {ref} (-> {mv.version})")
    return reasons


async def drop(pool: asyncpg.Pool, mv: ModelVersion, refs: Iterable[tuple[str, ModelRef]]) -> None:
    """Drop the results of ``mv`` (its partition and staged loads); refuse while it serves."""
    refs = list(refs)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':activate:' || $1))",
            mv.name,
        )
        reasons = await in_use(conn, mv, refs)
        if reasons:
            raise VersionInUse(f"{mv} serves traffic: " + "; ".join(reasons))
        row = await conn.fetchrow(
            "SELECT status, results_table FROM model_versions WHERE model = $1 AND version = $2 FOR UPDATE",
            mv.name,
            mv.version,
        )
        staged = await conn.fetch(
            "SELECT load_id, stage_table FROM result_loads WHERE model = $1 AND version = $2 AND state = 'staged'",
            mv.name,
            mv.version,
        )
        if row is None and not staged:
            raise VersionError(f"{mv} was never loaded")
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        tables = [r["stage_table"] for r in staged]
        if row is not None and row["results_table"]:
            tables.append(row["results_table"])
        for t in tables:
            # Dropping a partition detaches it too (ACCESS EXCLUSIVE on the model's table, briefly).
            await conn.execute(f"DROP TABLE IF EXISTS {ident(t)}")
        await conn.execute(
            "UPDATE model_versions SET status = 'retired', results_table = NULL"
            " WHERE model = $1 AND version = $2",
            mv.name,
            mv.version,
        )
        await conn.execute(
            "UPDATE result_loads SET state = 'dropped' WHERE model = $1 AND version = $2"
            " AND state IN ('staged', 'active')",
            mv.name,
            mv.version,
        )


async def retention_candidates(
    conn: asyncpg.Connection | asyncpg.Pool,
    keep: int,
    refs: Iterable[tuple[str, ModelRef]],
    model: str | None = None,
) -> list[ModelVersion]:
    """Active versions the retention rule drops: per model, all but the ``keep`` most recently
    activated, never one that serves traffic (alias, surface, running experiment)."""
    refs = list(refs)
    rows = await conn.fetch(
        "SELECT model, version FROM model_versions WHERE status = 'active'"
        " AND ($1::text IS NULL OR model = $1) ORDER BY model, activated_at DESC, version DESC",
        model,
    )
    out: list[ModelVersion] = []
    seen: dict[str, int] = {}
    for r in rows:
        mv = ModelVersion(r["model"], r["version"])
        seen[mv.name] = seen.get(mv.name, 0) + 1
        if seen[mv.name] > keep and not await in_use(conn, mv, refs):
            out.append(mv)
    return out
