"""A small, versioned migration mechanism for abgate's Postgres schema.

Migrations are the ``NNNN_name.sql`` files of ``experiments/store/migrations/``, applied in name
order, each once, all pending ones in one transaction, recorded in ``schema_migrations``. A
transaction-level advisory lock serialises concurrent start-ups (several replicas, a loader and
a gateway), so running ``migrate`` at every start is safe and idempotent. Numbers need not be
contiguous: a missing file is applied whenever it appears.
"""

from __future__ import annotations

from importlib import resources
from typing import Protocol

_LOCK_KEY = 0x61626761  # "abga": one advisory lock for all abgate migrations


class Connection(Protocol):
    """The part of an asyncpg connection that migrations need."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[object]: ...

    def transaction(self) -> object: ...


def migration_files() -> list[tuple[str, str]]:
    """``(name, sql)`` of every migration, in the order they apply."""
    folder = resources.files("experiments.store") / "migrations"
    files = [f for f in folder.iterdir() if f.name.endswith(".sql")]
    return [
        (f.name.removesuffix(".sql"), f.read_text(encoding="utf-8"))
        for f in sorted(files, key=lambda f: f.name)
    ]


async def migrate(conn: Connection) -> list[str]:
    """Apply every migration not applied yet on ``conn``'s schema; return the names applied."""
    applied_now: list[str] = []
    async with conn.transaction():  # type: ignore[attr-defined]
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch("SELECT name FROM schema_migrations")
        done = {r["name"] for r in rows}  # type: ignore[index]
        for name, sql in migration_files():
            if name in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
    return applied_now
