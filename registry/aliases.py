"""Aliases as the gateway reads them: ``model_aliases`` in Postgres, with their history.

Every move of an alias is recorded by a trigger in ``model_alias_history`` (migration 0010),
whoever writes it, so ``rollback`` can undo the last moves in order, like ``git revert``:
a rollback pops the alias's history stack, a ``set`` pushes onto it. A move may carry the
evidence that justified it (migration 0012); evidence given for a version the alias already
points at is recorded as an ``evidence`` row, which is not a move and rollback skips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from registry.errors import AliasError

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One recorded move of ``models:/model@alias``."""

    model: str
    alias: str
    version: str
    previous: str | None
    action: str  # "set", "rollback", or "evidence" (promotion evidence, no move)
    changed_at: datetime
    evidence: dict[str, Any] | None = field(default=None)


async def set_alias(
    conn: Executor,
    model: str,
    alias: str,
    version: str,
    *,
    action: str = "set",
    evidence: Mapping[str, Any] | None = None,
) -> None:
    """Point ``models:/model@alias`` at ``version`` (gateways follow within ABGATE_ALIAS_REFRESH s).

    ``evidence`` (JSON-able) is stored with the history row of this move, in the same
    transaction.
    """
    sql = """INSERT INTO model_aliases (model, alias, version) VALUES ($1, $2, $3)
             ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now()"""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            await _set(c, sql, model, alias, version, action, evidence)
    else:
        await _set(conn, sql, model, alias, version, action, evidence)


async def _set(
    conn: asyncpg.Connection,
    sql: str,
    model: str,
    alias: str,
    version: str,
    action: str,
    evidence: Mapping[str, Any] | None,
) -> None:
    ev = orjson.dumps(evidence).decode() if evidence is not None else ""
    async with conn.transaction():
        # Transaction-local settings, read by the history trigger (migrations 0010 and 0012);
        # both are always set so an earlier move in the same transaction does not leak into this one.
        await conn.execute(
            "SELECT set_config('abgate.alias_action', $1, true),"
            " set_config('abgate.alias_evidence', $2, true)",
            action,
            ev,
        )
        await conn.execute(sql, model, alias, version)


async def alias_history(conn: Executor, model: str, alias: str) -> list[AliasMove]:
    """Every move of ``models:/model@alias``, oldest first."""
    rows = await conn.fetch(
        "SELECT model, alias, version, previous, action, changed_at, evidence::text AS evidence"
        " FROM model_alias_history WHERE model = $1 AND alias = $2 ORDER BY id",
        model,
        alias,
    )
    return [_move(r) for r in rows]


async def promotions_of(conn: Executor, model: str, version: str) -> list[AliasMove]:
    """Every history row that moved an alias of ``model`` to ``version`` or gave it evidence."""
    rows = await conn.fetch(
        "SELECT model, alias, version, previous, action, changed_at, evidence::text AS evidence"
        " FROM model_alias_history WHERE model = $1 AND version = $2 ORDER BY id",
        model,
        version,
    )
    return [_move(r) for r in rows]


def _move(r: Mapping[str, Any]) -> AliasMove:
    d = dict(r)
    d["evidence"] = orjson.loads(d["evidence"]) if d["evidence"] is not None else None
    return AliasMove(**d)


def rollback_target(history: list[AliasMove]) -> str | None:
    """The version a rollback moves the alias to: the one below the top of its history stack.

    Replaying the history, a ``set`` pushes its version and a ``rollback`` pops one, so two
    rollbacks after 1 -> 2 -> 3 go back to 2, then to 1 (not back and forth between 2 and 3).
    """
    stack: list[str] = []
    for move in history:
        if move.action == "evidence":
            continue
        if move.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.version:
                stack.append(move.version)
        else:
            stack.append(move.version)
    return stack[-2] if len(stack) >= 2 else None


async def rollback_alias(conn: asyncpg.Connection, model: str, alias: str) -> tuple[str, str]:
    """Move ``models:/model@alias`` back one step; returns ``(from_version, to_version)``.

    Runs in the caller's transaction; raises AliasError when there is nothing to roll back to.
    """
    current = await conn.fetchval(
        "SELECT version FROM model_aliases WHERE model = $1 AND alias = $2 FOR UPDATE",
        model,
        alias,
    )
    if current is None:
        raise AliasError(f"models:/{model}@{alias} is not set: nothing to roll back")
    target = rollback_target(await alias_history(conn, model, alias))
    if target is None:
        raise AliasError(
            f"models:/{model}@{alias} -> {current} has no earlier version to roll back to; "
            f"use `abgate batch alias {model} {alias} VERSION`"
        )
    await set_alias(conn, model, alias, target, action="rollback")
    return current, target
