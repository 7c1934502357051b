"""The input openers: the scheme table, content hashes given at construction, row counts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest

from batch import SourceError, open_input, rows_input
from batch.inputs import OPENERS, Input
from tests.batch.conftest import long_csv, version_rows


def test_an_unknown_scheme_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(SourceError) as exc:
        open_input("s3://bucket/results.parquet")
    assert "unknown scheme s3://" in str(exc.value)
    assert "gs://" in str(exc.value) and "bq://" in str(exc.value)


def test_a_new_scheme_is_one_entry_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, Mapping[str, str], int | None]] = []

    def open_mem(uri: str, rename: Mapping[str, str], batch_rows: int | None) -> Input:
        seen.append((uri, rename, batch_rows))
        return rows_input(version_rows("1", units=3), uri)

    monkeypatch.setitem(OPENERS, "mem", open_mem)
    inp = open_input("mem://x", columns={"unit_id": "user"}, batch_rows=7)
    assert seen == [("mem://x", {"user": "unit_id"}, 7)]
    assert [unit for unit, _ in inp] == ["u0", "u1", "u2", "__default__"]


def test_a_local_csv_is_hashed_as_it_is_read_and_counted_in_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(long_csv(version_rows("1", units=4, n=3)))
    inp = open_input(path)
    assert (inp.measure, inp.total) == ("bytes", path.stat().st_size)
    units = [unit for unit, _ in inp]
    assert units == ["u0", "u1", "u2", "u3", "__default__"]
    assert inp.rows_read == 15 and inp.done() == path.stat().st_size
    assert inp.content_hash() == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_python_rows_are_counted_in_rows_and_have_no_content_hash() -> None:
    inp = rows_input(version_rows("1", units=2))
    assert list(inp)[-1][0] == "__default__"
    assert (inp.measure, inp.rows_read, inp.done(), inp.content_hash()) == ("rows", 3, 3, "")
