"""Postgres connection pools for abgate: one schema per deployment, migrated at start-up."""

from __future__ import annotations

import re
from typing import TypeAlias

import asyncpg

from experiments.store.migrations import migrate

# What a query helper runs on: a connection (inside a transaction) or the pool.
Executor: TypeAlias = "asyncpg.Connection[asyncpg.Record] | asyncpg.Pool[asyncpg.Record]"

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def create_pool(
    dsn: str,
    schema: str = "abgate",
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 5.0,
    command_timeout: float = 5.0,
    prepare: bool = True,
    reset_on_release: bool = True,
) -> asyncpg.Pool:
    """A pool whose connections use ``schema`` (created and migrated if needed).

    ``timeout`` bounds connecting; ``command_timeout`` bounds every query. With
    ``prepare=False`` (and ``min_size=0``) nothing connects now: for a replica that starts while
    Postgres is down and must connect once it is back. ``reset_on_release=False`` skips the
    ``RESET ALL; UNLISTEN *; ...`` round trip asyncpg makes when a connection returns to the
    pool: only for pools that run single statements and change no session state.
    """
    if not _SCHEMA.match(schema):
        raise ValueError(f"postgres schema '{schema}' must match {_SCHEMA.pattern}")
    if prepare:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await migrate(conn)
        finally:
            await conn.close()
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        command_timeout=command_timeout,
        server_settings={"search_path": schema, "application_name": "abgate"},
        reset=None if reset_on_release else _keep_session,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only when not awaited
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool ``reset`` that sends nothing: the session holds no state worth resetting."""
