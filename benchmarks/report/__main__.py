"""``python -m benchmarks.report``: generate an archive and time the report against baselines.

Example (the issue's size)::

    python -m benchmarks.report --lines 10000000 --units 200000 --dir /tmp/abgate-analysis-bench

Needs the ``bench`` extra (pandas) for the pandas contender; ``--skip pandas`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report.contenders import CONTENDERS
from benchmarks.report.generate import generate


def _run(name: str, root: Path, config: Path) -> dict[str, object]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.report.contenders", name, str(root), str(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse options, generate (unless --reuse), run each contender, print the table."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/abgate-analysis-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep an archive generated before")
    ap.add_argument("--skip", action="append", default=[], choices=sorted(CONTENDERS))
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (best is kept)")
    args = ap.parse_args(argv)
    root, config = args.dir / "archive", args.dir / "bench-exp.yaml"
    if not (args.reuse and root.is_dir()):
        t = time.perf_counter()
        generate(root, lines=args.lines, units=args.units, days=args.days)
        size = sum(f.stat().st_size for f in root.rglob("*.json")) / 1e9
        print(
            f"generated {args.lines:,} lines (+1% duplicates) for {args.units:,} units, {size:.2f} GB, in {time.perf_counter() - t:.0f} s"
        )
    results = {}
    for name in [
        n for n in ("duckdb-scan", "duckdb-scan-fields", "report", "pandas") if n not in args.skip
    ]:
        runs = [_run(name, root, config) for _ in range(args.repeat)]
        results[name] = min(runs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
        print(f"  {name}: {float(results[name]['seconds']):.1f} s", flush=True)  # type: ignore[arg-type]
    base = float(results["duckdb-scan"]["seconds"]) if "duckdb-scan" in results else None  # type: ignore[arg-type]
    rep = float(results["report"]["seconds"]) if "report" in results else None  # type: ignore[arg-type]
    print(
        "\n| contender | wall s | peak RSS MB | vs bare scan | report speed-up |\n|---|---:|---:|---:|---:|"
    )
    for name, r in results.items():
        s = float(r["seconds"])  # type: ignore[arg-type]
        ratio = f"{s / base:.2f}x" if base else "—"
        speed = f"{s / rep:.1f}x" if rep else "—"
        print(f"| {name} | {s:.1f} | {float(r['peak_rss_mb']):.0f} | {ratio} | {speed} |")  # type: ignore[arg-type]
    units = {n: r["units"] for n, r in results.items()}
    # the scans count every unit with any line; the report only units with a valid exposure
    same = (
        len(
            {
                json.dumps(u, sort_keys=True)
                for n, u in units.items()
                if not n.startswith("duckdb-scan")
            }
        )
        <= 1
    )
    print(f"\nunits per variant agree between report and pandas: {same} {units}")


if __name__ == "__main__":
    main()
