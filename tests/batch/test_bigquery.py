"""bq:// inputs through google-cloud-bigquery, end to end into Postgres, against the BigQuery
emulator that the analysis tests start (tests/analysis/test_bigquery.py, installed by
``make test`` or ``sh tests/analysis/setup_bqemulator.sh``)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from batch import load_results, open_input
from tests.batch.conftest import ranked, version_rows

bigquery = pytest.importorskip("google.cloud.bigquery")
# The emulator fixture lives with the analysis tests, which need the analysis extra.
pytest.importorskip("duckdb", reason="the BigQuery emulator fixture needs the analysis extra")
pytest.importorskip("sqlglot", reason="the BigQuery emulator fixture needs the analysis extra")
from tests.analysis.test_bigquery import emulator, needs_emulator  # noqa: E402

pytestmark = needs_emulator
__all__ = ["emulator"]  # the fixture, imported so that this module can use it


@pytest.fixture
def bq(emulator: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client on the emulator, a dataset of this test, and the loader pointed at it."""
    from analysis.bigquery import make_client

    client = make_client("test", endpoint=emulator)
    dataset = f"recs_{unique}"
    client.create_dataset(dataset)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator)
    yield client, f"test.{dataset}"
    client.delete_dataset(dataset, delete_contents=True)


async def served(pool: asyncpg.Pool, unit: str) -> object:
    text = await pool.fetchval(
        "SELECT items::text FROM results WHERE model = 'm' AND version = '1' AND unit_id = $1",
        unit,
    )
    return orjson.loads(text)


async def test_a_wide_bigquery_table_loads_end_to_end(pool: asyncpg.Pool, bq: Any) -> None:
    client, dataset = bq
    f = bigquery.SchemaField
    schema = [
        f("unit_id", "STRING"),
        f("item_ids", "STRING", mode="REPEATED"),
        f("scores", "FLOAT", mode="REPEATED"),
    ]
    client.create_table(bigquery.Table(f"{dataset}.v1", schema=schema))
    rows = version_rows("1", units=40)
    payload = [
        {"unit_id": u, "item_ids": [i["id"] for i in it], "scores": [i["score"] for i in it]}
        for u, it in rows
    ]
    assert client.insert_rows_json(f"{dataset}.v1", payload) == []
    # 15 rows a page: several pages, and units in every page
    summary = await load_results(pool, open_input(f"bq://{dataset}.v1", batch_rows=15), "m", "1")
    assert (summary.units, summary.default_items, summary.items) == (40, 5, 41 * 5)
    for unit in ("u0", "u17", "u39"):
        assert await served(pool, unit) == ranked(f"v1-{unit}")
    meta = orjson.loads(await pool.fetchval("SELECT metadata::text FROM model_versions"))
    assert meta["source"] == f"bq://{dataset}.v1" and meta["format"] == "bigquery"
    assert meta["input_hash"].startswith("bq-etag:") and meta["input_rows"] == 41


async def test_a_long_bigquery_table_with_other_column_names_loads(
    pool: asyncpg.Pool, bq: Any
) -> None:
    client, dataset = bq
    f = bigquery.SchemaField
    schema = [f("user", "STRING"), f("sku", "STRING"), f("p", "FLOAT"), f("rank", "INTEGER")]
    client.create_table(bigquery.Table(f"{dataset}.long", schema=schema))
    rows = version_rows("1", units=12)
    payload = [
        {"user": u, "sku": i["id"], "p": i["score"], "rank": r + 1}
        for u, it in rows
        for r, i in reversed(list(enumerate(it)))  # the rank column orders each list
    ]
    assert client.insert_rows_json(f"{dataset}.long", payload) == []
    inp = open_input(
        f"bq://{dataset}.long",
        columns={"unit_id": "user", "item_id": "sku", "score": "p"},
        batch_rows=7,
    )
    summary = await load_results(pool, inp, "m", "1")
    assert summary.units == 12
    assert await served(pool, "u11") == ranked("v1-u11")
