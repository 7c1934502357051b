"""bq:// inputs through google-cloud-bigquery, end to end into Postgres, against the BigQuery
emulator that the analysis tests start (tests/analysis/test_bigquery.py, installed by
``make test`` or ``sh tests/analysis/setup_bqemulator.sh``). Each table is read both through
the Storage Read API (the emulator's gRPC endpoint) and through REST ``tabledata.list``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from batch import load_results, open_input
from batch.inputs.bigquery import STREAMS
from tests.batch.conftest import version_rows

bigquery = pytest.importorskip("google.cloud.bigquery")
# The emulator fixture lives with the analysis tests, which need the analysis extra.
pytest.importorskip("duckdb", reason="the BigQuery emulator fixture needs the analysis extra")
pytest.importorskip("sqlglot", reason="the BigQuery emulator fixture needs the analysis extra")
from tests.analysis.test_bigquery import (  # noqa: E402
    Endpoints,
    emulator,
    emulator_endpoints,
    needs_emulator,
)

pytestmark = needs_emulator
# The fixtures, imported so that this module can use them.
__all__ = ["emulator", "emulator_endpoints"]


@dataclass(frozen=True, slots=True)
class Bq:
    """A client on the emulator, a dataset of this test, and how the loader reads it."""

    client: Any
    dataset: str
    read_api: str  # "storage" or "rest"


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The Storage Read sessions opened in this test: (max_stream_count asked, streams given)."""
    opened: list[tuple[int, int]] = []
    try:
        from google.cloud.bigquery_storage import BigQueryReadClient
    except ImportError:
        return opened  # nothing can open one
    create = BigQueryReadClient.create_read_session

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = create(self, *args, **kwargs)
        opened.append((kwargs["max_stream_count"], len(session.streams)))
        return session

    monkeypatch.setattr(BigQueryReadClient, "create_read_session", spy)
    return opened


def _dataset(
    endpoints: Endpoints, unique: str, monkeypatch: pytest.MonkeyPatch, read_api: str
) -> Iterator[Bq]:
    from analysis.bigquery import make_client

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", endpoints.rest)
    if read_api == "storage":
        pytest.importorskip(
            "google.cloud.bigquery_storage", reason="no google-cloud-bigquery-storage"
        )
        monkeypatch.setenv("BIGQUERY_STORAGE_EMULATOR_HOST", endpoints.grpc)
    else:
        monkeypatch.delenv("BIGQUERY_STORAGE_EMULATOR_HOST", raising=False)
    client = make_client("test", endpoint=endpoints.rest)
    dataset = f"recs_{unique}"
    client.create_dataset(dataset)
    yield Bq(client, f"test.{dataset}", read_api)
    client.delete_dataset(dataset, delete_contents=True)


@pytest.fixture(params=["storage", "rest"])
def bq(
    request: pytest.FixtureRequest,
    emulator_endpoints: Endpoints,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bq]:
    """A dataset of this test, and the loader pointed at the emulator: with its gRPC endpoint
    (Storage Read API), or with its REST endpoint only (the loader then reads through REST)."""
    yield from _dataset(emulator_endpoints, unique, monkeypatch, request.param)


@pytest.fixture
def bq_storage(
    emulator_endpoints: Endpoints, unique: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bq]:
    """A dataset of this test, and the loader pointed at both endpoints of the emulator."""
    yield from _dataset(emulator_endpoints, unique, monkeypatch, "storage")


async def served(pool: asyncpg.Pool, model: str = "m") -> dict[str, object]:
    """Every list the gateway would serve for ``model`` version 1, by unit, and the default."""
    rows = await pool.fetch(
        "SELECT unit_id, items::text AS items FROM results WHERE model = $1 AND version = '1'",
        model,
    )
    default = await pool.fetchval(
        "SELECT default_items::text FROM model_versions WHERE model = $1 AND version = '1'", model
    )
    return {r["unit_id"]: orjson.loads(r["items"]) for r in rows} | {
        "__default__": orjson.loads(default)
    }


async def metadata(pool: asyncpg.Pool, model: str = "m") -> dict[str, Any]:
    text = await pool.fetchval("SELECT metadata::text FROM model_versions WHERE model = $1", model)
    return dict(orjson.loads(text))


async def test_a_wide_bigquery_table_loads_end_to_end(
    pool: asyncpg.Pool, bq: Bq, sessions: list[tuple[int, int]]
) -> None:
    f = bigquery.SchemaField
    schema = [
        f("unit_id", "STRING"),
        f("item_ids", "STRING", mode="REPEATED"),
        f("scores", "FLOAT", mode="REPEATED"),
    ]
    bq.client.create_table(bigquery.Table(f"{bq.dataset}.v1", schema=schema))
    rows = version_rows("1", units=40)
    payload = [
        {"unit_id": u, "item_ids": [i["id"] for i in it], "scores": [i["score"] for i in it]}
        for u, it in rows
    ]
    assert bq.client.insert_rows_json(f"{bq.dataset}.v1", payload) == []
    # 15 rows a page (REST) or a slice (Storage Read): several, and units in every one
    inp = open_input(f"bq://{bq.dataset}.v1", batch_rows=15)
    summary = await load_results(pool, inp, "m", "1")
    assert (summary.units, summary.default_items, summary.items) == (40, 5, 41 * 5)
    assert await served(pool) == dict(rows)
    meta = await metadata(pool)
    assert meta["source"] == f"bq://{bq.dataset}.v1" and meta["format"] == "bigquery"
    assert meta["input_hash"].startswith("bq-etag:") and meta["input_rows"] == 41
    assert meta["bq_read_api"] == bq.read_api
    assert len(sessions) == (bq.read_api == "storage")


async def test_a_long_bigquery_table_with_other_column_names_loads(
    pool: asyncpg.Pool, bq: Bq, sessions: list[tuple[int, int]]
) -> None:
    f = bigquery.SchemaField
    schema = [f("user", "STRING"), f("sku", "STRING"), f("p", "FLOAT"), f("rank", "INTEGER")]
    bq.client.create_table(bigquery.Table(f"{bq.dataset}.long", schema=schema))
    rows = version_rows("1", units=12)
    payload = [
        {"user": u, "sku": i["id"], "p": i["score"], "rank": r + 1}
        for u, it in rows
        for r, i in reversed(list(enumerate(it)))  # the rank column orders each list
    ]
    assert bq.client.insert_rows_json(f"{bq.dataset}.long", payload) == []
    inp = open_input(
        f"bq://{bq.dataset}.long",
        columns={"unit_id": "user", "item_id": "sku", "score": "p"},
        batch_rows=7,
    )
    summary = await load_results(pool, inp, "m", "1")
    assert summary.units == 12
    assert await served(pool) == dict(rows)
    assert (await metadata(pool))["bq_read_api"] == bq.read_api
    assert sessions == ([(1, 1)] if bq.read_api == "storage" else [])


async def test_without_the_storage_package_a_table_is_read_through_rest(
    pool: asyncpg.Pool,
    bq_storage: Bq,
    sessions: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.cloud

    # As if google-cloud-bigquery-storage were not installed: its import fails.
    monkeypatch.delattr(google.cloud, "bigquery_storage", raising=False)
    monkeypatch.setitem(sys.modules, "google.cloud.bigquery_storage", None)
    f = bigquery.SchemaField
    schema = [f("unit_id", "STRING"), f("item_id", "STRING"), f("score", "FLOAT")]
    bq_storage.client.create_table(bigquery.Table(f"{bq_storage.dataset}.long", schema=schema))
    rows = version_rows("1", units=3)
    payload = [
        {"unit_id": u, "item_id": i["id"], "score": i["score"]} for u, it in rows for i in it
    ]
    assert bq_storage.client.insert_rows_json(f"{bq_storage.dataset}.long", payload) == []
    await load_results(pool, open_input(f"bq://{bq_storage.dataset}.long"), "m", "1")
    assert await served(pool) == dict(rows)
    assert (await metadata(pool))["bq_read_api"] == "rest" and sessions == []


async def test_a_long_table_is_read_in_one_stream_a_wide_one_in_several_and_reloads_are_no_ops(
    pool: asyncpg.Pool, bq_storage: Bq, sessions: list[tuple[int, int]]
) -> None:
    bq = bq_storage
    # Over 1 MB each (long ids), so that the emulator splits a table into as many streams as
    # asked (up to 10), each a range of rows; 7 items a unit, so that ranges would cut units.
    units, n, pad = 5_000, 7, "-" + "x" * 24 + "-"
    for name, select in {
        "long": f"SELECT unit, CONCAT(unit, '{pad}', CAST(i AS STRING)) AS item_id,"
        " 1.0 / (i + 1) AS score, i + 1 AS rank FROM units, UNNEST(GENERATE_ARRAY(0, 6)) AS i"
        " ORDER BY n, i DESC",  # each unit's rows in reverse: the rank column orders them
        "wide": "SELECT unit,"
        f" ARRAY(SELECT CONCAT(unit, '{pad}', CAST(i AS STRING))"
        " FROM UNNEST(GENERATE_ARRAY(0, 6)) AS i ORDER BY i) AS item_ids,"
        " ARRAY(SELECT 1.0 / (i + 1) FROM UNNEST(GENERATE_ARRAY(0, 6)) AS i ORDER BY i) AS scores"
        " FROM units ORDER BY n",
    }.items():
        bq.client.query(
            f"CREATE TABLE `{bq.dataset}.{name}` AS WITH units AS ("
            f" SELECT n, IF(n = {units}, '__default__', CONCAT('u', CAST(n AS STRING))) AS unit"
            f" FROM UNNEST(GENERATE_ARRAY(0, {units})) AS n) {select}"
        ).result()
    expected = {
        u: [{"id": f"{u}{pad}{i}", "score": 1.0 / (i + 1)} for i in range(n)]
        for u in [f"u{k}" for k in range(units)] + ["__default__"]
    }
    for name in ("long", "wide"):
        uri = f"bq://{bq.dataset}.{name}"
        summary = await load_results(pool, open_input(uri, columns={"unit_id": "unit"}), name, "1")
        assert summary.units == units
        assert await served(pool, name) == expected
        assert (await metadata(pool, name))["bq_read_api"] == "storage"
        # The same rows, for a wide table maybe in another order: the same results_sha256
        # (it ignores the order), so nothing to do.
        again = await load_results(pool, open_input(uri, columns={"unit_id": "unit"}), name, "1")
        assert again.unchanged and again.results_sha256 == summary.results_sha256
    assert sessions == [(1, 1), (1, 1), (STREAMS, STREAMS), (STREAMS, STREAMS)]
