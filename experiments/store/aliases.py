"""The ``model_aliases`` query: which version each ``models:/NAME@ALIAS`` names now.

One function, used by the gateway (to resolve aliases of a new snapshot), the pins of running
experiments, and the registry's commands; the table is written by ``abgate registry`` (and its
history kept by a trigger, migration 0010).
"""

from __future__ import annotations

from experiments.store.pool import Executor

ALIASES_SQL = "SELECT model, alias, version FROM model_aliases WHERE $1::text IS NULL OR model = $1"


async def read_aliases(
    conn: Executor, model: str | None = None, *, timeout: float | None = None
) -> dict[tuple[str, str], str]:
    """``(model, alias) -> version`` of ``model``'s aliases, or of every model's when None."""
    rows = await conn.fetch(ALIASES_SQL, model, timeout=timeout)
    return {(r["model"], r["alias"]): r["version"] for r in rows}
