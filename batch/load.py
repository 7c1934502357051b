"""Load precomputed results into Postgres: COPY into a staging table, validate, activate.

One load is one transaction that creates a standalone table (the future partition of this
version), streams every unit into it with ``COPY ... FREEZE``, builds its primary key and checks
it. Nothing is visible to readers until ``activate`` ATTACHes the table in a second, short
transaction (batch/versions.py). Killing the loader at any point before that commit leaves
nothing behind, and the previous state serving: a re-run starts from scratch.

Encoding and validation run in a worker thread on Arrow arrays (batch/frames.py) while the event
loop sends the previous chunk, one chunk ahead, so memory stays bounded by a few chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
import numpy as np
import orjson
import pyarrow.compute as pc

from batch.errors import LoadConflict, LoadError
from batch.frames import (
    DEFAULT_UNIT,
    ResultsDigest,
    Where,
    check,
    copy_lines,
)
from batch.inputs import Input, open_input, rows_input
from batch.versions import activate_load, ident, literal

LONG = 24 * 3600.0  # seconds: statements of a load are not bounded by the pool's command timeout


@dataclass(frozen=True, slots=True)
class Limits:
    """What a valid list is (``--min-items``/``--max-items``), and whether a default is required."""

    min_items: int = 1
    max_items: int = 1000
    require_default: bool = True


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a load wrote."""

    model: str
    version: str
    units: int
    default_items: int
    items: int = 0
    load_id: int = 0
    activated: bool = False
    unchanged: bool = False
    results_sha256: str = ""
    seconds: float = 0.0


class Progress(Protocol):
    """Told after each chunk: units and items so far, and input consumed (``measure`` units)."""

    def update(self, *, units: int, items: int, done: int) -> None: ...


@dataclass(slots=True)
class _Tally:
    units: int = 0
    items: int = 0
    default: list[dict[str, object]] | None = None
    default_row: int = 0


class _Unchanged(Exception):
    """The version is active with the same results: nothing to do (rolls the load back)."""


def read_results(path: Path | str, **kw: object) -> Input:
    """Open a results file (CSV, JSON Lines or Parquet; see batch/inputs/)."""
    return open_input(path, **kw)  # type: ignore[arg-type]


async def load_results(
    pool: asyncpg.Pool,
    rows: Input | Iterable[tuple[str, list[dict[str, object]]]],
    model: str,
    version: str,
    *,
    source: str = "",
    alias: str | None = None,
    activate: bool = True,
    replace: bool = False,
    limits: Limits = Limits(),
    progress: Progress | None = None,
    metadata: Mapping[str, object] | None = None,
) -> LoadSummary:
    """Load ``rows`` (an Input, or ``(unit_id, items)`` pairs) as ``model``/``version``.

    With ``activate`` the version serves as soon as this returns (and ``alias`` points at it).
    Loading a version that is already active with the same results does nothing; with different
    results it raises LoadConflict unless ``replace`` (model versions are immutable: gateways may
    keep serving cached lists of the old load until ABGATE_CACHE_TTL).
    """
    inp = rows if isinstance(rows, Input) else rows_input(rows, source)
    started = time.perf_counter()
    async with pool.acquire() as conn:
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':load:' || $1 || '/' || $2))",
            model,
            version,
        )
        if not locked:
            raise LoadConflict(f"another load of models:/{model}/{version} is running")
        try:
            try:
                load_id, tally, digest = await _stage(
                    conn, inp, model, version, limits, replace, progress, metadata or {}
                )
            except _Unchanged as exc:
                return LoadSummary(
                    model,
                    version,
                    0,
                    0,
                    unchanged=True,
                    results_sha256=str(exc),
                    seconds=time.perf_counter() - started,
                )
            if activate:
                await activate_load(conn, load_id, alias=alias)
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext(current_schema() || ':load:' || $1 || '/' || $2))",
                model,
                version,
            )
    return LoadSummary(
        model,
        version,
        tally.units,
        len(tally.default or ()),
        tally.items,
        load_id,
        activate,
        False,
        digest,
        time.perf_counter() - started,
    )


async def _stage(
    conn: asyncpg.Connection,
    inp: Input,
    model: str,
    version: str,
    limits: Limits,
    replace: bool,
    progress: Progress | None,
    extra: Mapping[str, object],
) -> tuple[int, _Tally, str]:
    load_id = await conn.fetchval("SELECT nextval('result_load_ids')")
    stage = await conn.fetchval("SELECT results_leaf_table($1, $2, $3)", model, version, load_id)
    lz4 = await conn.fetchval(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    tally = _Tally()
    stored = await conn.fetchval(
        "SELECT metadata->>'results_sha256' FROM model_versions WHERE model = $1 AND version = $2",
        model,
        version,
    )
    sha = ResultsDigest(ordered=(stored or "").startswith("sha256:"))
    async with conn.transaction():
        await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        m, v = literal(model), literal(version)
        await conn.execute(
            f"""CREATE TABLE {ident(stage)} (
                    model   text NOT NULL DEFAULT {m} CHECK (model = {m}),
                    version text NOT NULL DEFAULT {v} CHECK (version = {v}),
                    unit_id text NOT NULL,
                    items   text {"COMPRESSION lz4" if lz4 else ""} NOT NULL,
                    src_row bigint NOT NULL
                ) WITH (autovacuum_enabled = false)"""
        )
        await conn.copy_to_table(
            stage,
            source=_chunks(inp, limits, tally, sha, progress),
            columns=["unit_id", "items", "src_row"],
            format="text",
            freeze=True,
            timeout=LONG,
        )
        if tally.default is None and limits.require_default:
            raise LoadError(
                inp.where.file,
                None,
                f"no default list: add a unit '{DEFAULT_UNIT}' (served to units without a list)",
            )
        if tally.units == 0:
            raise LoadError(inp.where.file, None, "no units: the input is empty")
        await _primary_key(conn, stage, inp.where)
        await conn.execute(
            f"ALTER TABLE {ident(stage)} DROP COLUMN src_row, RESET (autovacuum_enabled)",
            timeout=LONG,
        )
        await conn.execute(f"ANALYZE {ident(stage)}", timeout=LONG)
        default = tally.default or []
        sha.add(b"\0default\t" + orjson.dumps(default))
        sha.add_ordered(orjson.dumps(default))
        digest = "sha256-sum:" + sha.hexdigest()
        legacy = "sha256:" + sha.ordered.hexdigest() if sha.ordered is not None else None
        await _check_existing(conn, model, version, digest, replace, legacy)
        metadata = {
            "source": inp.uri,
            "format": inp.format,
            "input_hash": inp.content_hash(),
            "input_rows": inp.rows_read,
            "units": tally.units,
            "items": tally.items,
            "default_items": len(default),
            "results_sha256": digest,
            "load_id": load_id,
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            **inp.lineage,
            **extra,
        }
        await conn.execute(
            """INSERT INTO result_loads (load_id, model, version, stage_table, state, default_items,
                                         unit_count, metadata)
               VALUES ($1, $2, $3, $4, 'staged', $5::jsonb, $6, $7::jsonb)""",
            load_id,
            model,
            version,
            stage,
            orjson.dumps(default).decode(),
            tally.units,
            orjson.dumps(metadata).decode(),
        )
    return load_id, tally, digest


async def _chunks(
    inp: Input, limits: Limits, tally: _Tally, sha: ResultsDigest, progress: Progress | None
) -> AsyncIterator[bytes]:
    """COPY data, encoded in a worker thread one chunk ahead of the sender."""
    batches = inp.batches

    def produce() -> bytes | None:
        for batch in batches:
            check(batch, inp.where, min_items=limits.min_items, max_items=limits.max_items)
            keep = None
            i = pc.index(batch.units, DEFAULT_UNIT).as_py()
            if i >= 0:
                if tally.default is not None:
                    raise inp.where.error(
                        batch.rows[i],
                        f"unit '{DEFAULT_UNIT}' appears twice (first at {inp.where.label} {tally.default_row})",
                    )
                tally.default, tally.default_row = batch.items_of(i), int(batch.rows[i])
                keep = np.ones(len(batch), bool)
                keep[i] = False
            data = copy_lines(batch, keep, sha)
            sha.add_ordered(data)
            tally.units += len(batch) - (0 if keep is None else 1)
            tally.items += batch.item_count
            if data:
                return data
        return None

    pending = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while True:
            data = await pending
            if data is None:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(produce))
            if progress is not None:
                progress.update(units=tally.units, items=tally.items, done=inp.done())
            yield data
    finally:
        if not pending.done():
            pending.cancel()


async def _primary_key(conn: asyncpg.Connection, stage: str, where: Where) -> None:
    """Index the stage by unit; a duplicate unit is an error naming both rows."""
    try:
        async with conn.transaction():
            await conn.execute(
                f"ALTER TABLE {ident(stage)} ADD PRIMARY KEY (unit_id)", timeout=LONG
            )
    except asyncpg.UniqueViolationError:
        dup = await conn.fetchrow(
            f"""SELECT unit_id, array_agg(src_row ORDER BY src_row) AS rows FROM {ident(stage)}
                GROUP BY unit_id HAVING count(*) > 1 ORDER BY min(src_row) LIMIT 1""",
            timeout=LONG,
        )
        rows = ", ".join(str(r) for r in dup["rows"])
        raise where.error(
            dup["rows"][1],
            f"unit '{dup['unit_id']}' appears more than once ({where.label}s {rows}); each unit "
            "needs exactly one list (in long inputs, its rows must be contiguous)",
        ) from None


async def _check_existing(
    conn: asyncpg.Connection,
    model: str,
    version: str,
    digest: str,
    replace: bool,
    legacy: str | None = None,
) -> None:
    """Raise _Unchanged when the active version holds these results (by ``digest``, or by the
    ``legacy`` ordered digest of versions loaded before 2026-11-27), LoadConflict when it holds
    others and ``replace`` is off."""
    row = await conn.fetchrow(
        "SELECT status, metadata->>'results_sha256' AS sha FROM model_versions"
        " WHERE model = $1 AND version = $2",
        model,
        version,
    )
    if row is None or row["status"] != "active":
        return
    if row["sha"] in (digest, legacy):
        raise _Unchanged(digest)
    if not replace:
        raise LoadConflict(
            f"models:/{model}/{version} is already active with other results; model versions are "
            "immutable: load them as a new version, or pass --replace (gateways may serve cached "
            "lists of the old load until ABGATE_CACHE_TTL expires)"
        )
