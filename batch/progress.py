"""A rich progress bar for loads and warm-ups: units/s, items/s and an ETA."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Implements ``batch.Progress``; use as a context manager around the load."""

    def __init__(
        self, console: Console, description: str, total: int | None, measure: str = "rows"
    ) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._bar.add_task(description, total=total, stats="")
        self._started = time.perf_counter()
        self.measure = measure

    def update(self, *, units: int, items: int, done: int) -> None:
        """Show ``units`` and ``items`` so far and their rates; ``done`` drives the ETA."""
        took = max(time.perf_counter() - self._started, 1e-9)
        stats = f"{units:,} units {units / took:,.0f}/s"
        if items:
            stats += f" · {items:,} items {items / took:,.0f}/s"
        self._bar.update(self._task, completed=done, stats=stats)

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()
