"""The exposure path alone, in one process: ``python -m benchmarks.exposure_path``.

Times ``Gateway.log_exposure`` (id, timestamp, payload, counter, LogEntry line, queue) and the
archive write of its lines, with the gateway's own classes and a real ``ArchiveSink`` in a
temporary folder, for an answer shaped like the benchmark's (10 items, a 50/50 phase): CPU
µs per exposure, best of ``--repeat`` runs (the least disturbed by other work on the machine).
No servers, no network: the figures move with the code, not with the load of the machine as
much as the server benchmarks do (docs/benchmarks.md, "Exposure logging").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from experiments.settings import Settings
from gateway.exposure_json import NATIVE, ExposureEncoder
from gateway.log_writer import build_log
from gateway.metrics import Metrics
from gateway.serving import Answer
from gateway.sinks import ArchiveSink

WEIGHTS = (
    {"variant": "control", "weight": 50, "lo": 0, "hi": 5000},
    {"variant": "treatment", "weight": 50, "lo": 5000, "hi": 10000},
)


def answer() -> Any:
    """An answer as ``Gateway.answer`` gives it for the benchmark's experiment surface."""
    surface = SimpleNamespace(name="home_top", log_attributes=())
    route = SimpleNamespace(
        experiment="home-recs-bench",
        variant="control",
        surface=surface,
        config_version=1,
        forced=False,
        holdout=False,
    )
    return Answer(
        route,
        SimpleNamespace(name="home_recs", version="1"),
        [{"id": f"sku-{i * 997 % 50_000}", "score": 1.0 - i / 100} for i in range(10)],
        "cache",
        2006,
        SimpleNamespace(id="44e34d59a878", weights=WEIGHTS),
    )


def gateway(folder: Path, native: bool) -> Any:
    """A ``Gateway`` with only what ``log_exposure`` touches: logger, metrics, encoder."""
    from gateway import serving as service

    settings = Settings(archive_dir=folder / "archive", spool_dir=folder / "spool")
    metrics = Metrics()
    sink = ArchiveSink(folder / "archive", project="local", log_id="abgate-events")
    gw = service.Gateway.__new__(service.Gateway)
    gw.logger = build_log(settings, metrics, {"archive": sink})
    gw.metrics = metrics
    gw.exposure_json = ExposureEncoder(metrics.exposure_counts, gw.logger.admit, native=native)
    gw.log_exposure = gw.exposure_json.log
    return gw


def instructions(fn: Callable[[], object], number: int) -> float:
    """Instructions per call of ``fn`` (user space), counted by callgrind around ``number``
    calls: the process must run under ``valgrind --tool=callgrind --instr-atstart=no``, with
    callgrind's default output file names (this reads and removes ./callgrind.out.PID.N)."""
    pid = str(os.getpid())
    for _ in range(max(1, number // 10)):  # warm: caches, first-call paths
        fn()
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    for _ in range(number):
        fn()
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    dump = max(Path().glob(f"callgrind.out.{pid}.*"), key=lambda f: f.stat().st_mtime_ns)
    total = next(
        int(line.split()[1])
        for line in dump.read_text().splitlines()
        if line.startswith("summary:")
    )
    dump.unlink()
    return total / number


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """CPU µs per call of ``fn``, best of ``repeat`` runs of ``number`` calls; instructions per
    call instead when ``repeat`` is 0 (``--callgrind``)."""
    if repeat == 0:
        return instructions(fn, number)
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        for _ in range(number):
            fn()
        times.append((time.process_time() - t0) / number * 1e6)
    return min(times)


async def measure(number: int, repeat: int, native: bool) -> dict[str, float]:
    """Each piece, then the whole path with its writes."""
    with tempfile.TemporaryDirectory(prefix="abgate-expopath-") as tmp:
        gw = gateway(Path(tmp), native)
        ans = answer()
        batching = gw.logger.loggers[0]
        sink: ArchiveSink = batching.sink
        enc = gw.exposure_json
        gw.logger.start()
        try:
            route, model, phase, items = ans.route, ans.model, ans.phase, ans.items
            figures = {
                "the record (ids, time, payload, count)": best(
                    lambda: enc.exposure(
                        route, model, phase, "u12345", items, "cache", "r" * 32, 2006, None
                    ),
                    number,
                    repeat,
                ),
            }
            record = _one_record(gw, ans)
            figures["its LogEntry line"] = best(lambda: sink.encode(record), number, repeat)
            queue = batching._queue  # emptied here so the queue never fills

            def logged() -> None:
                gw.log_exposure(ans, "u12345", "r" * 32, None)
                queue.clear()

            figures["log_exposure (record, line, queue)"] = best(logged, number, repeat)
            lines = [sink.encode(record)] * 1000
            figures["archive write, per line (1,000-line batches)"] = best(
                lambda: sink.write(lines), max(1, number // 1000), repeat
            ) / len(lines)
            if repeat == 0:
                return figures
            totals = []
            for _ in range(repeat):
                gc.collect()
                t0 = time.process_time()
                for i in range(number):
                    gw.log_exposure(ans, "u12345", "r" * 32, None)
                    if i % 1000 == 999:
                        await batching.flush()
                await batching.flush()
                totals.append((time.process_time() - t0) / number * 1e6)
            figures["whole path: log_exposure + its share of the writes"] = min(totals)
        finally:
            await gw.logger.aclose()
    return figures


def _one_record(gw: Any, ans: Any) -> Any:
    captured: list[Any] = []
    enc = gw.exposure_json
    ExposureEncoder(admit=captured.append, native=enc.native).log(ans, "u12345", "r" * 32, None)
    return captured[0]


def main(argv: list[str] | None = None) -> None:
    """Measure and print a markdown table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.exposure_path", description=__doc__)
    p.add_argument("--number", type=int, default=100_000, help="calls per run")
    p.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions per call instead of µs: run under valgrind --tool=callgrind "
        "--instr-atstart=no (docs/benchmarks.md)",
    )
    args = p.parse_args(argv)
    repeat = 0 if args.callgrind else args.repeat
    native = asyncio.run(measure(args.number, repeat, True)) if NATIVE else {}
    python = asyncio.run(measure(args.number, repeat, False))
    load = Path("/proc/loadavg").read_text().split()[0]
    unit = "instructions" if args.callgrind else f"CPU µs, best of {args.repeat} x"
    print(f"{unit} per call, {args.number:,} calls (load average {load})\n")
    print("| piece | compiled encoder | Python encoder |\n|---|---:|---:|")
    for name, us in python.items():
        c = (
            (f"{native[name]:,.0f}" if args.callgrind else f"{native[name]:.2f}")
            if name in native
            else "not built"
        )
        print(
            f"| {name} | {c} | {us:.2f} |"
            if not args.callgrind
            else f"| {name} | {c} | {us:,.0f} |"
        )


if __name__ == "__main__":
    main()
