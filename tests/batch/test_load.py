"""Loading: every input shape, validation naming the row, idempotent re-runs, staged activation."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import asyncpg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import (
    Limits,
    LoadConflict,
    LoadError,
    SourceError,
    activate,
    list_versions,
    load_results,
    open_input,
)
from tests.batch.conftest import long_csv, ranked, version_rows, wide_table


async def stored(pool: asyncpg.Pool, model: str, version: str, unit: str) -> object:
    """A unit's list as the gateway reads it (the same SQL)."""
    text = await pool.fetchval(
        "SELECT items::text FROM results WHERE model = $1 AND version = $2 AND unit_id = $3",
        model,
        version,
        unit,
    )
    return None if text is None else orjson.loads(text)


def write_jsonl(path: Path, rows: list[tuple[str, list[dict[str, object]]]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"unit_id": u, "items": it}) + b"\n" for u, it in rows))
    return path


@pytest.mark.parametrize(
    "shape", ["csv", "csv-rank", "jsonl", "parquet-long", "parquet-wide", "parquet-items"]
)
async def test_every_input_shape_loads_the_same_lists(
    pool: asyncpg.Pool, tmp_path: Path, shape: str
) -> None:
    rows = version_rows("1", units=30)
    if shape.startswith("csv"):
        path = tmp_path / "r.csv"
        path.write_text(long_csv(rows, rank=shape == "csv-rank"))
    elif shape == "jsonl":
        path = write_jsonl(tmp_path / "r.jsonl", rows)
    else:
        path = tmp_path / "r.parquet"
        if shape == "parquet-long":
            flat = [(u, it["id"], it["score"]) for u, items in rows for it in items]
            table = pa.table(
                {k: [r[i] for r in flat] for i, k in enumerate(("unit_id", "item_id", "score"))}
            )
        elif shape == "parquet-wide":
            table = wide_table(rows)
        else:
            table = pa.table(
                {"unit_id": [u for u, _ in rows], "items": [items for _, items in rows]}
            )
        pq.write_table(table, path, row_group_size=7)
    inp = open_input(path, batch_rows=11)  # small batches: units span batch boundaries
    summary = await load_results(pool, inp, "m", "1")
    assert (summary.units, summary.default_items, summary.items) == (30, 5, 31 * 5)
    for unit, items in rows[:3] + rows[-2:-1]:
        assert await stored(pool, "m", "1", unit) == items
    (info,) = await list_versions(pool, "m")
    assert info.default_items == 5 and info.metadata["input_hash"].startswith("sha256:")
    assert info.metadata["input_rows"] == (
        31 * 5 if "long" in shape or shape.startswith("csv") else 31
    )


def write_wide(path: Path, rows: list[tuple[str, list[dict[str, object]]]]) -> None:
    pq.write_table(wide_table(rows), path)


async def test_a_folder_of_parquet_parts_loads_as_one_input(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rows = version_rows("1", units=30)
    out = tmp_path / "spark-out"
    out.mkdir()
    write_wide(out / "part-00001-a.snappy.parquet", rows[20:])
    write_wide(out / "part-00000-a.snappy.parquet", rows[:20])
    (out / "_SUCCESS").write_text("")
    (out / ".part-00000-a.snappy.parquet.crc").write_bytes(b"\0")
    summary = await load_results(pool, open_input(out), "m", "1")
    assert (summary.units, summary.default_items) == (30, 5)
    assert await stored(pool, "m", "1", "u25") == ranked("v1-u25")
    write_wide(out / "part-00002-a.snappy.parquet", [("u3", ranked("again"))])
    with pytest.raises(LoadError, match=r"spark-out: row 32: unit 'u3' appears more than once"):
        await load_results(pool, open_input(out), "m", "2")
    pq.write_table(pa.table({"unit_id": ["u9"]}), out / "part-00003-a.snappy.parquet")
    with pytest.raises(
        SourceError, match=r"part-00003-a.snappy.parquet: columns \['unit_id'\] differ from "
    ):
        open_input(out)  # before anything is read: every footer is checked when opening


async def test_column_mapping_reads_other_names(pool: asyncpg.Pool, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        long_csv(version_rows("1", 3)).replace("unit_id,item_id,score", "user,sku,p", 1)
    )
    await load_results(
        pool,
        open_input(path, columns={"unit_id": "user", "item_id": "sku", "score": "p"}),
        "m",
        "1",
    )
    assert await stored(pool, "m", "1", "u2") == ranked("v1-u2")


def _csv(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text("unit_id,item_id,score\n" + body)
    return p


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "__default__,d,1\nu1,a,1\nu1,b,nan\n",
            "bad.csv: line 4: field 'score' is nan, not a finite number",
        ),
        (
            "__default__,d,1\nu1,a,1\nu1,b,high\n",
            "bad.csv: line 4: field 'score' is 'high', not a number",
        ),
        ("__default__,d,1\nu1,a,1\n,b,1\n", "bad.csv: line 4: field 'unit_id' is empty"),
        ("__default__,d,1\nu1,,1\n", "bad.csv: line 3: field 'item_id' is empty"),
        (
            "__default__,d,1\nu1,a,1\nu2,a,1\nu1,c,1\n",
            "bad.csv: line 5: unit 'u1' appears more than once (lines 3, 5)",
        ),
        (
            "__default__,d,1\nu1,a,1\nu1,b,1\nu1,c,1\n",
            "bad.csv: line 3: unit 'u1' has 3 items; lists must have 1 to 2 items",
        ),
        (
            "__default__,d,1\nu1,a,1\nu1,a,0.5\n",
            "bad.csv: line 4: unit 'u1': item 'a' appears twice in its list (lines 3, 4)",
        ),
        ("u1,a,1\n", "bad.csv: no default list: add a unit '__default__'"),
    ],
)
async def test_every_validation_error_names_the_row(
    pool: asyncpg.Pool, tmp_path: Path, body: str, expected: str
) -> None:
    with pytest.raises(LoadError) as info:
        await load_results(
            pool, open_input(_csv(tmp_path, body)), "m", "1", limits=Limits(max_items=2)
        )
    assert expected in str(info.value)
    assert await pool.fetchval("SELECT count(*) FROM model_versions") == 0


async def test_duplicate_units_far_apart_are_found_across_chunks(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rows = version_rows("1", units=50)
    rows.append(("u3", ranked("again")))
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    with pytest.raises(
        LoadError, match=r"r.jsonl: line 52: unit 'u3' appears more than once \(lines 4, 52\)"
    ):
        await load_results(pool, open_input(path), "m", "1")


async def test_python_rows_errors_name_the_row(pool: asyncpg.Pool) -> None:
    rows = [("u1", ranked("a")), ("u2", [{"id": "x", "score": float("inf")}])]
    with pytest.raises(
        LoadError, match=r"<rows>: row 2: unit 'u2': field 'items\[0\].score' is inf"
    ):
        await load_results(pool, iter(rows), "m", "1")
    with pytest.raises(LoadError, match=r"demo: row 1: unit 'u1' has an empty list"):
        await load_results(pool, iter([("u1", [])]), "m", "1", source="demo")


async def test_an_item_twice_in_one_list_is_refused_but_not_across_lists(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    x, y = {"id": "x", "score": 0.9}, {"id": "y", "score": 0.5}
    with pytest.raises(
        LoadError,
        match=r"<rows>: row 2: unit 'u2': item 'x' appears twice in its list "
        r"\(items\[0\] and items\[2\]\)",
    ):
        await load_results(pool, iter([("u1", [x]), ("u2", [x, y, x])]), "m", "1")
    ranked_csv = "unit_id,item_id,score,rank\n__default__,d,1,1\nu1,b,0.5,2\nu1,b,0.9,1\n"
    with pytest.raises(
        LoadError, match=r"bad.csv: line 4: unit 'u1': item 'b' appears twice .*\(lines 3, 4\)"
    ):
        (tmp_path / "bad.csv").write_text(ranked_csv)
        await load_results(pool, open_input(tmp_path / "bad.csv"), "m", "1")
    summary = await load_results(pool, iter([("__default__", [x, y]), ("u1", [x, y])]), "m", "1")
    assert summary.units == 1


async def test_reloading_the_same_results_is_a_no_op(pool: asyncpg.Pool) -> None:
    first = await load_results(pool, iter(version_rows("1")), "m", "1")
    again = await load_results(pool, iter(version_rows("1")), "m", "1")
    assert again.unchanged and again.results_sha256 == first.results_sha256
    assert await pool.fetchval("SELECT count(*) FROM result_loads") == 1


async def test_the_same_results_in_another_order_and_format_are_unchanged(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A re-run job may write its units in another order (Spark) or another format: the
    results digest ignores the order, so the reload is a no-op; one changed score is not."""
    rows = version_rows("1", units=50)
    first = await load_results(pool, iter(rows), "m", "1")
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(long_csv([*reversed(rows[10:]), *rows[:10]]))
    again = await load_results(pool, open_input(shuffled), "m", "1")
    assert again.unchanged and again.results_sha256 == first.results_sha256
    assert first.results_sha256.startswith("sha256-sum:")
    changed = [(u, [dict(it) for it in items]) for u, items in rows]
    changed[7][1][2]["score"] = 0.55  # one score of one unit
    with pytest.raises(LoadConflict, match="already active with other results"):
        await load_results(pool, iter(changed), "m", "1")
    swapped = [(u, list(items)) for u, items in rows]
    swapped[3][1][0], swapped[3][1][1] = swapped[3][1][1], swapped[3][1][0]  # one unit's ranks
    with pytest.raises(LoadConflict, match="already active with other results"):
        await load_results(pool, iter(swapped), "m", "1")
    default_changed = [*rows[:-1], ("__default__", ranked("other-default"))]
    with pytest.raises(LoadConflict, match="already active with other results"):
        await load_results(pool, iter(default_changed), "m", "1")


async def test_a_version_loaded_with_the_ordered_digest_still_reloads_as_a_no_op(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions loaded before 2026-11-27 carry ``sha256:`` of the COPY data in order, then the
    default's JSON: the same results still reload as a no-op, others are still refused."""
    module = importlib.import_module("batch.load")
    sent: list[bytes] = []
    real = module.copy_lines

    def recording(*args: object) -> bytes:
        data = real(*args)
        sent.append(data)
        return data

    monkeypatch.setattr(module, "copy_lines", recording)
    rows = version_rows("1", units=30)
    await load_results(pool, iter(rows), "m", "1")
    default = orjson.dumps(rows[-1][1])
    ordered = "sha256:" + hashlib.sha256(b"".join(sent) + default).hexdigest()
    await pool.execute(
        "UPDATE model_versions SET metadata = jsonb_set(metadata, '{results_sha256}', to_jsonb($1::text))",
        ordered,
    )
    again = await load_results(pool, iter(rows), "m", "1")
    assert again.unchanged
    assert await pool.fetchval("SELECT count(*) FROM result_loads") == 1
    with pytest.raises(LoadConflict, match="already active with other results"):
        await load_results(pool, iter(version_rows("1b", units=30)), "m", "1")


async def test_an_active_version_is_immutable_unless_replaced(pool: asyncpg.Pool) -> None:
    await load_results(pool, iter(version_rows("1")), "m", "1")
    with pytest.raises(LoadConflict, match="already active with other results"):
        await load_results(pool, iter(version_rows("1b")), "m", "1")
    assert await stored(pool, "m", "1", "u0") == ranked("v1-u0")
    await load_results(pool, iter(version_rows("1b")), "m", "1", replace=True)
    assert await stored(pool, "m", "1", "u0") == ranked("v1b-u0")
    tables = await pool.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'res_m_%'"
    )
    assert tables == 1  # the replaced partition is gone


async def test_a_staged_load_serves_only_once_activated(pool: asyncpg.Pool) -> None:
    summary = await load_results(pool, iter(version_rows("2")), "m", "2", activate=False)
    assert not summary.activated
    assert await stored(pool, "m", "2", "u1") is None
    assert [v.status for v in await list_versions(pool, "m")] == ["staged"]
    await activate(pool, "m", "2", alias="champion")
    assert await stored(pool, "m", "2", "u1") == ranked("v2-u1")
    (info,) = await list_versions(pool, "m")
    assert (info.status, info.aliases) == ("active", ("champion",))
