"""Referential checks of the experiment store, run inside its write transaction.

- every model a running experiment can serve has loaded, active results and a default list
  (``model_versions`` and ``model_aliases`` of experiments/store/migrations/0001_results.sql);
- a salt that ever ran is never started again (its units would get their old variants back).
"""

from __future__ import annotations

import asyncpg

from experiments.errors import LifecycleError
from experiments.modelref import ModelRef
from experiments.schema import Experiment
from experiments.store.aliases import read_aliases


async def check_salt_unused(conn: asyncpg.Connection, e: Experiment) -> None:
    rows = await conn.fetch(
        "SELECT DISTINCT name FROM config_versions WHERE kind = 'experiment' AND status = 'running'"
        " AND body->>'salt' = $1",
        e.salt,
    )
    if rows:
        names = ", ".join(sorted(r["name"] for r in rows))
        raise LifecycleError(
            f"salt '{e.salt}' already ran in experiment(s) {names}; its units would get their old "
            "variants back. Apply a new salt before starting"
        )


async def missing_models(conn: asyncpg.Connection, e: Experiment) -> list[str]:
    return await missing_refs(conn, [(f"variant '{v.key}'", v.model_ref) for v in e.variants])


async def missing_refs(conn: asyncpg.Connection, refs: list[tuple[str, ModelRef]]) -> list[str]:
    """Why each reference cannot serve: no alias, no loaded version, or no default list."""
    problems: list[str] = []
    for label, ref in refs:
        version = ref.version
        if version is None:
            aliases = await read_aliases(conn, ref.name)
            version = aliases.get((ref.name, ref.alias or ""))
            if version is None:
                problems.append(f"{label}: {ref} names no version (alias '{ref.alias}' is not set)")
                continue
        row = await conn.fetchrow(
            "SELECT status, jsonb_array_length(default_items) AS n FROM model_versions WHERE model = $1 AND version = $2",
            ref.name,
            version,
        )
        shown = f"models:/{ref.name}/{version}" + (f" (via {ref})" if ref.alias else "")
        if row is None:
            problems.append(
                f"{label}: {shown} has no loaded results (load them with `abgate batch load`)"
            )
        elif row["status"] != "active":
            problems.append(f"{label}: {shown} is {row['status']}, not active")
        elif not row["n"]:
            problems.append(f"{label}: {shown} has no default list")
    return problems
