"""Pinned arms as the registry side reads them: ``experiment_pins`` (docs/design.md).

A running experiment's variant that names ``models:/NAME@ALIAS`` serves the version the gateway
pinned when it first saw the experiment; moving the alias does not change it. This module only
reads the pins, and reads them defensively: a database whose migrations predate the table has
no pins (``None``), which callers report as "not pinned" rather than fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

Executor = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Pin:
    """The version one variant of an experiment is pinned to."""

    experiment: str
    variant: str
    model: str
    alias: str | None
    version: str
    pinned_at: datetime | None


async def read_pins(conn: Executor, model: str) -> list[Pin] | None:
    """Every pin of ``model``'s versions, or ``None`` when the database has no pins table."""
    if not await conn.fetchval("SELECT to_regclass('experiment_pins') IS NOT NULL"):
        return None
    rows = await conn.fetch(
        "SELECT experiment, variant, model, alias, version, pinned_at FROM experiment_pins"
        " WHERE model = $1 ORDER BY experiment, variant",
        model,
    )
    return [Pin(**dict(r)) for r in rows]
