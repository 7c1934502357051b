"""Percentiles from the histogram, the JSON document and the table."""

from __future__ import annotations

import orjson
from rich.console import Console

from loadtests import LoadResult, to_json, to_table
from loadtests.recorder import Recorder, percentiles_ms


def test_percentiles_come_from_the_recorded_latencies() -> None:
    rec = Recorder()
    for ms in range(1, 1001):  # 1 ms .. 1000 ms, one each
        rec.response(200, ms / 1000)

    p = percentiles_ms(rec.latency)

    assert abs(p["p50"] - 500) <= 1
    assert abs(p["p90"] - 900) <= 1
    assert abs(p["p99"] - 990) <= 1
    assert abs(p["p99.9"] - 999) <= 1
    assert abs(p["max"] - 1000) <= 1


def test_an_empty_run_has_zero_percentiles() -> None:
    assert percentiles_ms(Recorder().latency)["p99"] == 0.0


def result() -> LoadResult:
    return LoadResult(
        mode="open",
        url="http://127.0.0.1:1/v1/recommendations",
        scenario="home_top: 10 units",
        duration_s=2.0,
        concurrency=4,
        target_rate=100.0,
        scheduled=200,
        statuses={200: 190, 503: 5},
        errors={"timeout": 5},
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "p99.9": 4.0, "max": 5.0, "mean": 1.1},
        send_lag_ms={"p50": 0.1, "p90": 0.1, "p99": 0.2, "p99.9": 0.3, "max": 0.4, "mean": 0.1},
    )


def test_json_report_counts_errors_by_status_and_kind() -> None:
    doc = orjson.loads(to_json(result()))

    assert doc["throughput_rps"] == 95.0
    assert doc["statuses"] == {"200": 190, "503": 5}
    assert doc["errors"] == {"timeout": 5}
    assert doc["failed"] == 10
    assert doc["latency_ms"]["p99.9"] == 4.0


def test_table_shows_throughput_and_every_percentile() -> None:
    console = Console(record=True, width=120)
    console.print(to_table(result()))
    text = console.export_text()

    assert "95.0 req/s" in text
    for key in ("p50", "p90", "p99", "p99.9"):
        assert f"latency {key}" in text
    assert "timeout: 5" in text
