"""The shared contracts: each function gives exactly the form docs/design.md documents."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import ModelVersion, archive_hour, archive_path, results_key, results_key_head
from experiments.store import read_aliases
from experiments.store.aliases import ALIASES_SQL

DESIGN = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text(encoding="utf-8")


def _documented(text: str) -> None:
    assert f"`{text}`" in DESIGN, f"docs/design.md no longer documents `{text}`"


def test_results_key_is_the_documented_redis_key() -> None:
    key = results_key("abgate:", ModelVersion("home_recs", "7"), "u-123")
    assert key == "abgate:r:home_recs:7:u-123"
    _documented(key)
    _documented("{prefix}r:{model}:{version}:{unit_id}")


@given(prefix=st.text(max_size=8), unit=st.text(max_size=24))
def test_results_key_is_its_head_then_the_unit(prefix: str, unit: str) -> None:
    mv = ModelVersion("m", "3")
    assert results_key(prefix, mv, unit) == results_key_head(prefix, mv) + unit


def test_archive_path_is_the_documented_export_object() -> None:
    p = archive_path(Path("/a"), "abgate-events", "2026-11-26T18:04:30.123456Z")
    assert p == Path("/a/abgate-events/2026/11/26/18:00:00_18:59:59_S0.json")
    _documented(p.relative_to("/a").as_posix())
    _documented("LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json")


def test_archive_path_takes_an_hour_prefix_and_refuses_other_years(tmp_path: Path) -> None:
    assert archive_path(tmp_path, "l", "2026-01-02T03").name == "03:00:00_03:59:59_S0.json"
    with pytest.raises(ValueError, match="4-digit"):
        archive_path(tmp_path, "l", "999-06-01T05")


@given(
    ts=st.datetimes().filter(lambda d: d.year >= 1000).map(lambda d: d.isoformat() + "Z"),
    root=st.sampled_from(["", "/abs/root", "rel"]),
)
def test_archive_hour_reads_back_the_hour_archive_path_wrote(ts: str, root: str) -> None:
    path = archive_path(Path(root), "abgate-events", ts)
    assert archive_hour(path.as_posix()) == ts[:13]


def test_archive_hour_accepts_any_shard_and_rejects_other_names() -> None:
    assert archive_hour("l/2026/01/02/03:00:00_03:59:59_S12.json") == "2026-01-02T03"
    assert archive_hour("l/2026/01/02/03:00:00_03:59:59_S0.json.tmp") is None
    assert archive_hour("l/2026/01/02/hour.json") is None


def test_alias_query_is_the_documented_one() -> None:
    _documented(ALIASES_SQL)


async def test_read_aliases_reads_every_model_or_one(pool: asyncpg.Pool) -> None:
    for model, version in (("home_recs", "1"), ("home_recs", "7"), ("cart_recs", "2")):
        await pool.execute(
            "INSERT INTO model_versions (model, version, status) VALUES ($1, $2, 'active')",
            model,
            version,
        )
    await pool.executemany(
        "INSERT INTO model_aliases (model, alias, version) VALUES ($1, $2, $3)",
        [
            ("home_recs", "champion", "1"),
            ("home_recs", "challenger", "7"),
            ("cart_recs", "champion", "2"),
        ],
    )
    assert await read_aliases(pool) == {
        ("home_recs", "champion"): "1",
        ("home_recs", "challenger"): "7",
        ("cart_recs", "champion"): "2",
    }
    assert await read_aliases(pool, "cart_recs") == {("cart_recs", "champion"): "2"}
    assert await read_aliases(pool, "nope") == {}


def test_no_package_writes_a_contract_by_hand() -> None:
    root = Path(__file__).resolve().parents[2]
    hand_made = re.compile(r"r:\{mv\.name\}|:00:00_\{")
    offences = [
        str(p.relative_to(root))
        for package in (
            "gateway",
            "batch",
            "registry",
            "analysis",
            "abgate",
            "experiments",
            "benchmarks",
        )
        for p in (root / package).rglob("*.py")
        if p.name != "contracts.py" and hand_made.search(p.read_text(encoding="utf-8"))
    ]
    assert not offences, f"contract strings written outside experiments/contracts.py: {offences}"
