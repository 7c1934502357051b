"""``abgate logs verify`` and ``abgate logs tail``: an operator's look at a local log archive.

``verify`` reads every hour file of an archive (the layout of DESIGN.md, "The archive") and
reports, per hour: lines, exposures, outcomes, torn lines (not JSON, or the file's last line
without its newline), duplicates (an ``insertId`` seen before, in any file) and records filed
under another hour; then the hours with no file between the first and the last (gaps). It
exits 1 when a line is torn or duplicated, so that a cron job can alert. ``tail`` prints the
newest records, and with ``--follow`` keeps printing them as they are appended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from experiments import archive_hour

app = typer.Typer(help="Check and follow the local log archive.", no_args_is_help=True)


@dataclass(slots=True)
class HourCount:
    """What one hour file holds."""

    hour: str  # 2026-11-26T18
    file: str
    lines: int = 0
    exposures: int = 0
    outcomes: int = 0
    torn: int = 0
    duplicates: int = 0
    misplaced: int = 0  # records whose timestamp is in another hour


@dataclass(slots=True)
class Verification:
    """The result of ``verify``: per hour counts, gaps, and files that are not hour files."""

    hours: list[HourCount] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)

    def total(self, name: str) -> int:
        """The sum of one count over the hours."""
        return sum(getattr(h, name) for h in self.hours)

    @property
    def ok(self) -> bool:
        """No torn and no duplicated line."""
        return self.total("torn") == 0 and self.total("duplicates") == 0


def hour_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(hour, path)`` of every hour file below ``root``, oldest first."""
    found = []
    for path in root.rglob("*.json"):
        hour = archive_hour(path.relative_to(root).as_posix())
        if hour is not None:
            found.append((hour, path))
    yield from sorted(found)


def verify_archive(root: Path) -> Verification:
    """Count every hour file's lines, torn lines, duplicates and misplaced records; find gaps."""
    out = Verification()
    seen: set[str] = set()
    for path in sorted(root.rglob("*.json")):
        if archive_hour(path.relative_to(root).as_posix()) is None:
            out.other_files.append(str(path))
    for hour, path in hour_files(root):
        count = HourCount(hour, str(path))
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the final newline
        elif lines:
            count.torn += 1  # the last line has no newline: cut short
            lines.pop()
            count.lines += 1
        for raw in lines:
            count.lines += 1
            try:
                entry = orjson.loads(raw)
                insert_id = entry["insertId"]
                kind = entry["jsonPayload"]["type"]
                ts = entry["timestamp"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                count.torn += 1
                continue
            if insert_id in seen:
                count.duplicates += 1
            seen.add(insert_id)
            count.exposures += kind == "exposure"
            count.outcomes += kind == "outcome"
            count.misplaced += not str(ts).startswith(hour)
        out.hours.append(count)
    present = sorted({h.hour for h in out.hours})
    if present:
        step = datetime.fromisoformat(present[0] + ":00")
        last = datetime.fromisoformat(present[-1] + ":00")
        have = set(present)
        while step < last:
            step += timedelta(hours=1)
            key = step.strftime("%Y-%m-%dT%H")
            if key not in have:
                out.gaps.append(key)
    return out


def _default_root() -> Path:
    from experiments.settings import Settings

    s = Settings()
    return s.archive_dir


@app.command("verify")
def verify(
    archive: Path | None = typer.Argument(
        None, help="Archive root (default: ABGATE_ARCHIVE_DIR)", show_default=False
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
) -> None:
    """Count records per hour and find torn lines, duplicates and gaps; exit 1 if any line is
    torn or duplicated."""
    root = archive or _default_root()
    if not root.is_dir():
        typer.echo(f"error: {root} is not a folder (the archive root)", err=True)
        raise typer.Exit(1)
    result = verify_archive(root)
    if fmt == "json":
        body = asdict(result) | {"ok": result.ok}
        typer.echo(json.dumps(body, indent=2))
    else:
        table = Table("hour (UTC)", "lines", "exposures", "outcomes", "torn", "dup", "misplaced")
        for h in result.hours:
            table.add_row(
                h.hour, *(str(getattr(h, k)) for k in ("lines", "exposures", "outcomes", "torn", "duplicates", "misplaced"))
            )  # fmt: skip
        console = Console()
        console.print(table)
        console.print(
            f"{len(result.hours)} hour files, {result.total('lines')} lines: "
            f"{result.total('torn')} torn, {result.total('duplicates')} duplicates, "
            f"{result.total('misplaced')} misplaced; gaps: {', '.join(result.gaps) or 'none'}"
        )
        for other in result.other_files:
            console.print(f"not an hour file: {other}")
    raise typer.Exit(0 if result.ok else 1)


def _describe(raw: bytes) -> str:
    try:
        entry = orjson.loads(raw)
        p = entry["jsonPayload"]
        if p.get("type") == "exposure":
            what = f"exposure {p['experiment']}/{p['variant']} unit={p['unit_id']} source={p['source']}"
        else:
            what = f"{p.get('type')} {p.get('name')} unit={p.get('unit_id')} value={p.get('value')}"
        return f"{entry['timestamp']} {what}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"(torn line) {raw[:120]!r}"


@app.command("tail")
def tail(
    archive: Path | None = typer.Argument(
        None, help="Archive root (default: ABGATE_ARCHIVE_DIR)", show_default=False
    ),
    lines: int = typer.Option(10, "--lines", "-n", help="Records to print first"),
    follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing new records"),
    raw: bool = typer.Option(False, "--json", help="Print the LogEntry lines as they are"),
) -> None:
    """Print the newest records of the archive (one line each), and follow it with -F."""
    root = archive or _default_root()
    if not root.is_dir():
        typer.echo(f"error: {root} is not a folder (the archive root)", err=True)
        raise typer.Exit(1)
    show = (lambda b: b.decode()) if raw else _describe
    files = list(hour_files(root))
    if not files:
        typer.echo(f"no records yet in {root}", err=True)
    current, offset = (files[-1][1], 0) if files else (None, 0)
    if current is not None:
        data = current.read_bytes()
        offset = data.rfind(b"\n") + 1  # a last line still being written is not shown
        for line in data[:offset].splitlines()[-lines:] if lines > 0 else []:
            typer.echo(show(line))
    while follow:
        time.sleep(0.5)  # polling: the archive is plain files
        newest = next(reversed(list(hour_files(root))), None)
        if current is not None and current.exists():
            data = current.read_bytes()
            if len(data) < offset:
                offset = 0  # truncated (a torn tail was cut off)
            end = data.rfind(b"\n") + 1
            for line in data[offset:end].splitlines():
                typer.echo(show(line))
            offset = max(offset, end)
        if newest is not None and newest[1] != current:
            current, offset = newest[1], 0
