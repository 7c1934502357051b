"""gs:// inputs through google-cloud-storage, against a local GCS emulator (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from abgate.embedded import free_port
from batch import load_results, open_input
from tests.batch.conftest import long_csv, ranked, version_rows

storage = pytest.importorskip("google.cloud.storage")
emulator = pytest.importorskip("gcp_storage_emulator.server")


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A bucket ``results`` in an in-memory GCS emulator; the client library finds it by env."""
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="results")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield storage.Client().bucket("results")
    finally:
        server.stop()


async def test_a_gcs_object_loads_with_its_lineage(
    pool: asyncpg.Pool, gcs: object, tmp_path: Path
) -> None:
    gcs.blob("v1/results.csv").upload_from_string(long_csv(version_rows("1", units=40)))  # type: ignore[attr-defined]
    summary = await load_results(pool, open_input("gs://results/v1/results.csv"), "m", "1")
    assert summary.units == 40
    text = await pool.fetchval(
        "SELECT items::text FROM results WHERE model = 'm' AND unit_id = 'u39'"
    )
    assert orjson.loads(text) == ranked("v1-u39")
    meta = orjson.loads(await pool.fetchval("SELECT metadata::text FROM model_versions"))
    assert meta["source"] == "gs://results/v1/results.csv"
    assert meta["input_hash"].startswith(("md5:", "crc32c:")) and meta["gcs_generation"]
