"""Load precomputed results (one ranked item list per unit) into Postgres.

Input formats:
- JSON Lines: ``{"unit_id": "u1", "items": [{"id": "sku-1", "score": 0.9}, ...]}`` per line.
- CSV with a header ``unit_id,item_id,score`` (optionally ``rank``): one row per unit-item pair,
  in rank order unless a ``rank`` column orders them.
The unit id ``__default__`` holds the version's default list, served to units without a list.

The load replaces the version's rows in one transaction, so readers see the old set or the
new one, never a mix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson

from batch.errors import LoadError

DEFAULT_UNIT = "__default__"


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a load wrote."""

    model: str
    version: str
    units: int
    default_items: int


def _check_items(items: object, file: str, line: int) -> list[dict[str, object]]:
    if not isinstance(items, list) or not items:
        raise LoadError(file, line, "field 'items' must be a non-empty list of {id, score}")
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("id"), str):
            raise LoadError(file, line, f"field 'items[{i}].id' must be a string")
        score = it.get("score")
        if (
            not isinstance(score, int | float)
            or isinstance(score, bool)
            or not math.isfinite(score)
        ):
            raise LoadError(file, line, f"field 'items[{i}].score' must be a finite number")
        out.append({"id": it["id"], "score": float(score)})
    return out


def read_jsonl(path: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """Yield ``(unit_id, items)`` from a JSON Lines file."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise LoadError(str(path), n, f"is not valid JSON: {exc}") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("unit_id"), str)
                or not row["unit_id"]
            ):
                raise LoadError(str(path), n, "field 'unit_id' must be a non-empty string")
            yield row["unit_id"], _check_items(row.get("items"), str(path), n)


def read_csv(path: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """Yield ``(unit_id, items)`` from a long-form CSV file (rows of one unit are contiguous)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"unit_id", "item_id", "score"} - set(reader.fieldnames or ())
        if missing:
            raise LoadError(str(path), 1, f"missing column(s): {', '.join(sorted(missing))}")
        has_rank = "rank" in (reader.fieldnames or ())
        unit: str | None = None
        rows: list[tuple[float, dict[str, object]]] = []
        seen: set[str] = set()
        for row in reader:
            n = reader.line_num
            uid = row["unit_id"]
            if not uid:
                raise LoadError(str(path), n, "field 'unit_id' is empty")
            try:
                score = float(row["score"])
                rank = float(row["rank"]) if has_rank else float(len(rows))
            except ValueError:
                raise LoadError(str(path), n, "fields 'score' and 'rank' must be numbers") from None
            if not math.isfinite(score):
                raise LoadError(str(path), n, "field 'score' must be a finite number")
            if uid != unit:
                if unit is not None:
                    yield unit, [it for _, it in sorted(rows, key=lambda r: r[0])]
                if uid in seen:
                    raise LoadError(str(path), n, f"rows of unit '{uid}' are not contiguous")
                seen.add(uid)
                unit, rows = uid, []
            rows.append((rank if has_rank else len(rows), {"id": row["item_id"], "score": score}))
        if unit is not None:
            yield unit, [it for _, it in sorted(rows, key=lambda r: r[0])]


def read_results(path: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """Rows of a results file, by its extension (.jsonl/.ndjson/.json or .csv)."""
    if not path.is_file():
        raise LoadError(str(path), None, "no such file")
    if path.suffix in {".jsonl", ".ndjson", ".json"}:
        return read_jsonl(path)
    if path.suffix == ".csv":
        return read_csv(path)
    raise LoadError(str(path), None, "unknown format: use .jsonl or .csv")


async def load_results(
    pool: asyncpg.Pool,
    rows: Iterator[tuple[str, list[dict[str, object]]]],
    model: str,
    version: str,
    *,
    source: str = "",
    alias: str | None = None,
) -> LoadSummary:
    """Replace the results of ``model``/``version`` with ``rows`` in one transaction."""
    default: list[dict[str, object]] = []
    records = []
    seen: set[str] = set()
    for unit_id, items in rows:
        if unit_id in seen:
            raise LoadError(source or "<rows>", None, f"unit '{unit_id}' appears twice")
        seen.add(unit_id)
        if unit_id == DEFAULT_UNIT:
            default = items
            continue
        records.append((model, version, unit_id, orjson.dumps(items).decode()))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM results WHERE model = $1 AND version = $2", model, version)
        await conn.copy_records_to_table(
            "results", records=records, columns=["model", "version", "unit_id", "items"]
        )
        await conn.execute(
            """INSERT INTO model_versions (model, version, status, default_items, unit_count, metadata, activated_at)
               VALUES ($1, $2, 'active', $3::jsonb, $4, $5::jsonb, now())
               ON CONFLICT (model, version) DO UPDATE SET status = 'active',
                 default_items = EXCLUDED.default_items, unit_count = EXCLUDED.unit_count,
                 metadata = EXCLUDED.metadata, activated_at = now()""",
            model,
            version,
            orjson.dumps(default).decode(),
            len(records),
            orjson.dumps({"source": source}).decode(),
        )
        if alias:
            await set_alias(conn, model, alias, version)
    return LoadSummary(model, version, len(records), len(default))


async def set_alias(
    conn: asyncpg.Connection | asyncpg.Pool, model: str, alias: str, version: str
) -> None:
    """Point ``models:/model@alias`` at ``version``."""
    await conn.execute(
        """INSERT INTO model_aliases (model, alias, version) VALUES ($1, $2, $3)
           ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now()""",
        model,
        alias,
        version,
    )
