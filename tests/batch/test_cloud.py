"""gs:// inputs through google-cloud-storage, against a local GCS emulator (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abgate.embedded import free_port
from batch import LoadError, SourceError, list_versions, load_results, open_input
from tests.batch.conftest import long_csv, ranked, version_rows, wide_table

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


Rows = list[tuple[str, list[dict[str, object]]]]


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a Parquet file, with small row groups so that parts are read in pieces."""
    out = pa.BufferOutputStream()
    pq.write_table(table, out, row_group_size=7)
    return bytes(out.getvalue())


def upload_parts(bucket: object, folder: str, parts: list[Rows]) -> dict[str, bytes]:
    """Spark-like part files of wide ``parts`` under ``folder``, by base name."""
    files = {
        f"part-{i:05d}-a.snappy.parquet": parquet_bytes(wide_table(p)) for i, p in enumerate(parts)
    }
    for name, data in files.items():
        bucket.blob(folder + name).upload_from_string(data)  # type: ignore[attr-defined]
    return files


def md5_set(files: dict[str, bytes]) -> str:
    """The documented folder digest: sha256 over ``name\\0md5\\n`` lines, md5 in GCS's base64."""
    sha = hashlib.sha256()
    for name in sorted(files):
        md5 = base64.b64encode(hashlib.md5(files[name]).digest()).decode()
        sha.update(f"{name}\0{md5}\n".encode())
    return "gcs-md5-set:" + sha.hexdigest()


@pytest.mark.parametrize("uri", ["gs://results/out/", "gs://results/out"])
async def test_a_gcs_folder_of_parts_loads_as_one_input_with_a_folder_digest(
    pool: asyncpg.Pool, gcs: object, uri: str
) -> None:
    rows = version_rows("1", units=30)
    files = upload_parts(gcs, "out/", [rows[:12], rows[12:25], rows[25:]])
    # Not parts: Spark's marker, a hidden file, a deeper "folder", a sibling prefix; written
    # last, so that their generations are the newest.
    gcs.blob("out/_SUCCESS").upload_from_string(b"")  # type: ignore[attr-defined]
    gcs.blob("out/.part-00003-a.snappy.parquet").upload_from_string(  # type: ignore[attr-defined]
        parquet_bytes(wide_table([("hidden", ranked("hidden"))]))
    )
    gcs.blob("out/sub/part-00000.parquet").upload_from_string(  # type: ignore[attr-defined]
        parquet_bytes(wide_table([("deep", ranked("deep"))]))
    )
    gcs.blob("out-old/part-00000.parquet").upload_from_string(  # type: ignore[attr-defined]
        parquet_bytes(wide_table([("old", ranked("old"))]))
    )
    inp = open_input(uri)
    assert inp.total == 31  # from the footers, before any data is read
    summary = await load_results(pool, inp, "m", "1")
    assert (summary.units, summary.default_items, summary.items) == (30, 5, 31 * 5)
    served = await pool.fetch("SELECT unit_id, items::text FROM results WHERE model = 'm'")
    assert {r["unit_id"]: orjson.loads(r["items"]) for r in served} == dict(rows[:-1])
    (info,) = await list_versions(pool, "m")
    generations = [gcs.get_blob("out/" + name).generation for name in files]  # type: ignore[attr-defined]
    assert info.metadata["source"] == uri and info.metadata["input_rows"] == 31
    assert info.metadata["input_hash"] == md5_set(files)
    assert info.metadata["gcs_parts"] == 3
    assert info.metadata["gcs_max_generation"] == str(max(generations))


async def test_rows_are_numbered_across_the_parts_in_name_order(
    pool: asyncpg.Pool, gcs: object
) -> None:
    rows = version_rows("1", units=30)
    upload_parts(gcs, "out/", [rows[:20], rows[20:], [("u3", ranked("again"))]])
    with pytest.raises(
        LoadError, match=r"gs://results/out/: row 32: unit 'u3' appears more than once"
    ):
        await load_results(pool, open_input("gs://results/out/"), "m", "1")


def test_the_folder_digest_follows_the_content_of_each_part(gcs: object) -> None:
    rows = version_rows("1", units=30)
    upload_parts(gcs, "out/", [rows[:10], rows[10:20], rows[20:]])
    before = open_input("gs://results/out/").content_hash()
    upload_parts(gcs, "out/", [rows[:10], rows[10:20], rows[20:]])  # new generations, same bytes
    assert open_input("gs://results/out/").content_hash() == before
    changed = [(u, ranked("v2-" + u)) if u == "u15" else (u, it) for u, it in rows[10:20]]
    files = upload_parts(gcs, "out/", [rows[:10], changed, rows[20:]])
    after = open_input("gs://results/out/").content_hash()
    assert after != before and after == md5_set(files)


def test_a_part_with_other_columns_is_named(gcs: object) -> None:
    rows = version_rows("1", units=30)
    upload_parts(gcs, "out/", [rows[:15], rows[15:]])
    long = pa.table({"unit_id": ["u99"], "item_id": ["a"], "score": [1.0]})
    gcs.blob("out/part-00001-a.snappy.parquet").upload_from_string(parquet_bytes(long))  # type: ignore[attr-defined]
    with pytest.raises(
        SourceError,
        match=r"^gs://results/out/part-00001-a.snappy.parquet: columns \['unit_id', 'item_id', "
        r"'score'\] differ from gs://results/out/part-00000-a.snappy.parquet$",
    ):
        open_input("gs://results/out/")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://results/nothing/", r"gs://results/nothing/: no such object or folder"),
        ("gs://results/nothing", r"gs://results/nothing: no such object or folder"),
        ("gs://results/marker/", r"gs://results/marker/: a folder without \.parquet files"),
        ("gs://no-bucket/out/", r"gs://no-bucket/out/: NotFound: 404"),
    ],
)
def test_a_folder_without_parts_is_a_clear_error(gcs: object, uri: str, message: str) -> None:
    gcs.blob("marker/_SUCCESS").upload_from_string(b"")  # type: ignore[attr-defined]
    gcs.blob("marker/sub/part-00000.parquet").upload_from_string(b"PAR1")  # type: ignore[attr-defined]
    with pytest.raises(SourceError, match="^" + message):
        open_input(uri)


async def test_a_part_gone_during_the_load_is_an_error_naming_it(
    pool: asyncpg.Pool, gcs: object
) -> None:
    rows = version_rows("1", units=30)
    upload_parts(gcs, "out/", [rows[:15], rows[15:]])
    inp = open_input("gs://results/out/")
    gcs.blob("out/part-00001-a.snappy.parquet").delete()  # type: ignore[attr-defined]
    with pytest.raises(
        SourceError, match=r"^gs://results/out/part-00001-a.snappy.parquet: NotFound: 404"
    ):
        await load_results(pool, inp, "m", "1")
    assert await pool.fetchval("SELECT count(*) FROM model_versions") == 0
