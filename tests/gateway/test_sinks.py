"""The exposure/outcome logger: encoding on put, batching, retry after a failed write, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import orjson

from experiments import Exposure, Outcome, archive_path
from gateway.clock import UtcClock
from gateway.log_writer import BatchingLogger
from gateway.metrics import Metrics
from gateway.sinks import ArchiveSink, LogEntryEncoder


def exposure(n: int, ts: str) -> Exposure:
    return Exposure(
        f"e{n}",
        ts,
        "exp",
        "control",
        f"u{n}",
        "home",
        "m",
        "1",
        ("a", "b"),
        "v1",
        "cache",
        "r",
        False,
    )


def archive_logger(
    root: Path, metrics: Metrics, *, batch_size: int, queue_max: int = 10_000
) -> BatchingLogger:
    """A logger writing to an archive under ``root``, flushed by the test (not by time)."""
    sink = ArchiveSink(root, project="p", log_id="l")
    return BatchingLogger(
        sink, metrics, flush_interval=60, batch_size=batch_size, queue_max=queue_max
    )


def read_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_lines_go_to_the_file_of_their_hour_in_order(tmp_path: Path) -> None:
    sink = ArchiveSink(tmp_path, project="p", log_id="abgate-events")
    logger = BatchingLogger(sink, Metrics(), flush_interval=60, batch_size=3, queue_max=100)
    records = [exposure(i, f"2026-01-02T0{3 + i % 2}:00:0{i}.000000Z") for i in range(7)]
    records.append(Outcome("o1", "2026-01-02T03:59:59.999999Z", "u1", "purchase", 2.5, None))
    assert all(logger.put(r) for r in records)
    await logger.flush()
    assert len(logger) == 0
    three = read_lines(archive_path(tmp_path, "abgate-events", "2026-01-02T03"))
    four = read_lines(archive_path(tmp_path, "abgate-events", "2026-01-02T04"))
    assert [e["insertId"] for e in three] == ["e0", "e2", "e4", "e6", "o1"]
    assert [e["insertId"] for e in four] == ["e1", "e3", "e5"]
    first = three[0]
    assert first["logName"] == "projects/p/logs/abgate-events"
    assert first["timestamp"] == "2026-01-02T03:00:00.000000Z"
    assert first["jsonPayload"] == records[0].as_payload()
    assert three[-1]["jsonPayload"] == records[-1].as_payload()


WEIGHTS = (
    {"variant": "control", "weight": 50, "lo": 0, "hi": 5000},
    {"variant": "treatment", "weight": 50, "lo": 5000, "hi": 10000},
)


def reference_line(log_name: str, record: Exposure | Outcome) -> bytes:
    """A LogEntry line as the contract spells it: keys in order, the payload of as_payload()."""
    entry = {
        "logName": log_name,
        "insertId": record.event_id,
        "timestamp": record.ts,
        "severity": "INFO",
        "resource": {"type": "generic_task", "labels": {}},
        "jsonPayload": record.as_payload(),
    }
    return orjson.dumps(entry)


def test_every_shape_of_record_is_encoded_as_the_contract_spells_it() -> None:
    # The encoder joins constant parts encoded once with the record's encoded fields; its bytes
    # must be those of the plain entry for every combination of optional fields and awkward
    # strings (a faster encoder must keep passing this).
    enc = LogEntryEncoder(project="p", log_id="abgate-events")
    other_weights = ({"variant": "a", "weight": 1, "lo": 0, "hi": 10000},)
    shapes = itertools.product(
        (False, True),  # forced
        ("", "ph1", "ph2"),  # phase ("" = none); ph2 has other weights
        (-1, 0, 9999),  # bucket
        (False, True),  # holdout
        (None, {}, {"country": "fr", "n": 3, "odd": '\u00e9"\n\u2028'}),  # attributes
        ("u1", 'we"ird\\\u2028'),  # unit id
    )
    n = 0
    for forced, phase, bucket, holdout, attributes, unit in shapes:
        weights = {"": (), "ph1": WEIGHTS, "ph2": other_weights}[phase]
        record = Exposure(
            "e1", "2026-01-02T03:00:00.000001Z", "exp", "control", unit, "home", "m", "1",
            ("sku-1", 'sku-"2"'), 7, "cache", "r\\1", forced, phase, weights, bucket,
            holdout, attributes,
        )  # fmt: skip
        assert enc.line(record) == reference_line(enc.log_name, record), record
        n += 1
    outcome = Outcome("o1", "2026-01-02T03:59:59.999999Z", "u1", "purchase", 2.5, None)
    assert enc.line(outcome) == reference_line(enc.log_name, outcome)
    assert n == 216


def test_a_phase_reallocated_with_other_weights_is_encoded_with_them() -> None:
    # Each exposure carries its own phase's weights, never those of an earlier phase (an
    # encoder that caches encoded weights by phase or by object must keep passing this).
    enc = LogEntryEncoder(project="p", log_id="l")
    for hi in range(300):  # more phases than the cache keeps
        weights = ({"variant": "control", "weight": 1, "lo": 0, "hi": hi},)
        record = exposure(hi, "2026-01-02T03:00:00.000000Z")._replace(
            phase=f"ph{hi}", weights=weights
        )
        assert orjson.loads(enc.line(record))["jsonPayload"]["weights"][0]["hi"] == hi


def test_the_clock_writes_microseconds_of_the_current_second() -> None:
    clock = UtcClock()
    stamps = [clock() for _ in range(1000)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s) for s in stamps)
    assert stamps == sorted(stamps)


async def test_a_failed_write_keeps_its_batch_and_is_retried(tmp_path: Path) -> None:
    # The archive root is a file at first, so the write fails for real (mkdir refuses).
    root = tmp_path / "archive"
    root.write_text("in the way")
    metrics = Metrics()
    logger = archive_logger(root, metrics, batch_size=2)
    for i in range(5):
        logger.put(exposure(i, "2026-01-02T03:00:00.000000Z"))
    await logger.flush()
    assert len(logger) == 5  # nothing was lost
    assert metrics.log_errors._value.get() == 1
    root.unlink()
    await logger.flush()
    assert len(logger) == 0
    lines = read_lines(archive_path(root, "l", "2026-01-02T03"))
    assert [e["insertId"] for e in lines] == [f"e{i}" for i in range(5)]


async def test_a_full_queue_refuses_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    logger = archive_logger(tmp_path, metrics, batch_size=10, queue_max=2)
    assert [logger.put(exposure(i, "2026-01-02T03:00:00Z")) for i in range(3)] == [
        True,
        True,
        False,
    ]
    assert metrics.log_dropped._value.get() == 1


async def test_close_writes_everything_accepted(tmp_path: Path) -> None:
    logger = archive_logger(tmp_path, Metrics(), batch_size=1000)
    logger.start()
    for i in range(2500):
        logger.put(exposure(i, "2026-01-02T03:00:00.000000Z"))
    await asyncio.wait_for(logger.aclose(), 10)
    lines = read_lines(archive_path(tmp_path, "l", "2026-01-02T03"))
    assert [e["insertId"] for e in lines] == [f"e{i}" for i in range(2500)]
