"""The archive on a real full file system (a 256 KiB tmpfs), partial writes, torn tails, and the
spool: whole lines only, nothing lost, nothing written twice (issue 12, case 2)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from experiments import Exposure, archive_path
from gateway.log_writer import BatchingLogger, LogFanOut
from gateway.metrics import Metrics
from gateway.sinks import ArchiveSink
from gateway.spool import Spool
from gateway.stdout_sink import StdoutSink

HOUR = "2026-01-02T03"


def exposure(n: int, hour: str = HOUR) -> Exposure:
    return Exposure(
        f"e{n}", f"{hour}:00:00.000000Z", "exp", "control", f"u{n}", "home", "m", "1",
        tuple(f"sku-{i}" for i in range(20)), 1, "cache", "r", False,
    )  # fmt: skip


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a file system that really fills up (needs root; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """A filler file taking all but ``leave`` bytes of the file system."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def archived(root: Path, hour: str = HOUR) -> list[bytes]:
    path = archive_path(root, "l", hour)
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["insertId"] for line in lines]


def logger_for(sink, metrics: Metrics, **kw) -> BatchingLogger:
    kw.setdefault("batch_size", 50)
    kw.setdefault("queue_max", 100_000)
    return BatchingLogger(sink, metrics, flush_interval=60, **kw)


def assert_whole_lines(lines: list[bytes]) -> None:
    for line in lines:
        assert line.endswith(b"\n")
        orjson.loads(line)  # raises on a torn line


async def test_a_full_disk_leaves_whole_lines_and_a_retry_writes_each_record_once(small_fs):
    root = small_fs / "archive"
    filler = fill(small_fs, leave=40_000)  # room for ~60 of the 300 records
    metrics = Metrics()
    logger = logger_for(ArchiveSink(root, project="p", log_id="l"), metrics)
    for i in range(300):
        logger.put(exposure(i))
    assert not await logger.flush()
    during = archived(root)
    assert 0 < len(during) < 300
    assert_whole_lines(during)  # the batch cut short was truncated back
    assert ids(during) == [f"e{i}" for i in range(len(during))]
    assert len(logger) == 300 - len(during)  # every line not written is kept
    assert not await logger.flush()  # still full: no change, no duplicate
    assert archived(root) == during
    filler.unlink()  # space comes back
    assert await logger.flush()
    after = archived(root)
    assert_whole_lines(after)
    assert ids(after) == [f"e{i}" for i in range(300)]
    assert metrics.log_written._value.get() == 300


async def test_a_batch_over_two_hours_is_not_written_twice_when_the_second_hour_fails(tmp_path):
    root = tmp_path / "archive"
    other = "2026-01-03T04"  # another day: another folder
    blocked = archive_path(root, "l", other).parent
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")  # the hour's folder cannot be made
    logger = logger_for(ArchiveSink(root, project="p", log_id="l"), Metrics())
    for i in range(6):
        logger.put(exposure(i, HOUR if i % 2 == 0 else other))
    assert not await logger.flush()
    assert ids(archived(root)) == ["e0", "e2", "e4"]
    assert len(logger) == 3  # only the failed hour's records are kept
    blocked.unlink()
    assert await logger.flush()
    assert ids(archived(root)) == ["e0", "e2", "e4"]  # not twice
    assert ids(archived(root, other)) == ["e1", "e3", "e5"]


async def test_a_torn_last_line_left_by_a_dead_writer_is_cut_off(tmp_path):
    sink = ArchiveSink(tmp_path, project="p", log_id="l")
    sink.write([sink.encode(exposure(1))])
    path = archive_path(tmp_path, "l", HOUR)
    with path.open("ab") as f:
        f.write(sink.encode(exposure(2))[1][:100])  # a writer killed mid-line
    sink.write([sink.encode(exposure(3))])
    lines = archived(tmp_path)
    assert_whole_lines(lines)
    assert ids(lines) == ["e1", "e3"] and sink.repaired == 1


async def test_a_failing_sink_spills_to_the_spool_and_replays_in_order_once(
    small_fs, tmp_path, caplog
):
    root = small_fs / "archive"
    filler = fill(small_fs, leave=0)
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    metrics = Metrics()
    logger = logger_for(ArchiveSink(root, project="p", log_id="l"), metrics, spool=spool)
    logger.start()
    try:
        for i in range(120):
            logger.put(exposure(i))
        for _ in range(5):  # five failed flushes...
            assert not await logger.flush()
        assert len(logger) == 0 and spool.records == 120  # ...held on disk, not in memory
        assert "failing" in (logger.problem() or "")
        failures = [r for r in caplog.records if r.getMessage().startswith("log sink write failed")]
        assert len(failures) == 1  # ...logged once, with counts
        assert failures[0].levelno == logging.ERROR and failures[0].spooled == 0  # type: ignore[attr-defined]
        for i in range(120, 150):  # accepted during the outage: behind the spool
            logger.put(exposure(i))
        filler.unlink()
        assert await logger.flush()
        assert ids(archived(root)) == [f"e{i}" for i in range(150)]
        assert spool.records == 0 and len(spool) == 0 and logger.problem() is None
    finally:
        await logger.aclose()


async def test_a_full_spool_sheds_records_counted_and_keeps_accepting(tmp_path):
    root = tmp_path / "archive"
    root.write_text("in the way")
    spool = Spool(tmp_path / "spool", max_bytes=40_000)  # ~50 records
    metrics = Metrics()
    logger = logger_for(
        ArchiveSink(root, project="p", log_id="l"), metrics, spool=spool, queue_max=100
    )
    logger.start()
    try:
        first = [i for i in range(300) if logger.put(exposure(i))]
        assert len(first) == 100  # the memory queue's bound
        assert not await logger.flush()
        assert logger.full and logger.accepting  # shed: nothing refused
        assert "spool full, shedding" in (logger.problem() or "")
        taken = [i for i in range(300, 600) if logger.put(exposure(i))]
        assert metrics.log_dropped._value.get() == 300 - 100 + 300 - len(taken)
        assert metrics.log_spool_full.labels("archive")._value.get() == 1
        root.unlink()
        assert await logger.flush()
        written = ids(archived(root))
        assert len(written) == len(set(written)) == 100 + len(taken)
        assert not logger.full
    finally:
        await logger.aclose()


async def test_the_spool_outlives_the_process_and_the_next_one_replays_it(tmp_path):
    root = tmp_path / "archive"
    root.write_text("in the way")
    first = logger_for(
        ArchiveSink(root, project="p", log_id="l"),
        Metrics(),
        spool=Spool(tmp_path / "spool", max_bytes=10_000_000),
    )
    first.start()
    for i in range(70):
        first.put(exposure(i))
    await first.aclose()  # the sink still fails: the records stay in the spool
    root.unlink()
    second = logger_for(
        ArchiveSink(root, project="p", log_id="l"),
        Metrics(),
        spool=Spool(tmp_path / "spool", max_bytes=10_000_000),
    )
    second.start()
    second.put(exposure(70))
    assert await second.flush()
    await second.aclose()
    assert ids(archived(root)) == [f"e{i}" for i in range(71)]


def test_two_processes_never_share_a_spool_slot(tmp_path):
    a, b = Spool(tmp_path, max_bytes=1000), Spool(tmp_path, max_bytes=1000)
    a.open()
    b.open()
    assert a.folder != b.folder
    a.close()
    c = Spool(tmp_path, max_bytes=1000)
    c.open()  # a's slot is free again
    assert c.folder == a.folder
    b.close()
    c.close()


async def test_stdout_lines_are_cloud_run_structured_entries_and_sinks_fail_apart(tmp_path):
    read_end, write_end = os.pipe()
    blocked = tmp_path / "archive"
    blocked.write_text("in the way")
    archive = BatchingLogger(
        ArchiveSink(blocked, project="p", log_id="l"),
        Metrics(),
        flush_interval=60,
        batch_size=10,
        queue_max=100,
    )
    stdout = BatchingLogger(
        StdoutSink(log_id="abgate-events", fd=write_end),
        Metrics(),
        flush_interval=60,
        batch_size=10,
        queue_max=100,
        name="stdout",
    )
    both = LogFanOut([archive, stdout])
    records = [exposure(i) for i in range(3)]
    assert all(both.put(r) for r in records)
    assert not await archive.flush() and await stdout.flush()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        lines = [orjson.loads(line) for line in f.read().splitlines()]
    assert len(archive) == 3 and both.status().startswith("archive: failing (NotADirectoryError")
    assert len(lines) == 3
    first = lines[0]
    assert first["severity"] == "INFO"
    assert first["time"] == records[0].ts
    assert first["logging.googleapis.com/insertId"] == "e0"
    assert first["logging.googleapis.com/labels"] == {"abgate_log": "abgate-events"}
    special = {
        "severity",
        "time",
        "logging.googleapis.com/insertId",
        "logging.googleapis.com/labels",
    }
    assert {k: v for k, v in first.items() if k not in special} == records[0].as_payload()


async def test_under_refuse_a_full_spool_refuses_new_records_but_keeps_admitted_ones(tmp_path):
    root = tmp_path / "archive"
    root.write_text("in the way")
    metrics = Metrics()
    logger = logger_for(
        ArchiveSink(root, project="p", log_id="l"),
        metrics,
        spool=Spool(tmp_path / "spool", max_bytes=20_000),
        spool_full="refuse",
    )
    logger.start()
    try:
        for i in range(100):
            assert logger.put(exposure(i))
        assert not await logger.flush()
        assert not logger.accepting
        assert not logger.put(exposure(100))  # an event arriving now: refused (503)
        # an answer given while the log still accepted (checked before the read): kept
        assert logger.put(exposure(101), admitted=True)
        assert metrics.log_refused._value.get() == 1 and metrics.log_dropped._value.get() == 0
        root.unlink()
        assert await logger.flush() and logger.accepting
        written = ids(archived(root))
        assert written == [f"e{i}" for i in range(100)] + ["e101"]
    finally:
        await logger.aclose()
