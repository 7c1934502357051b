"""Render a ``LoadResult`` as a rich table or as JSON."""

from __future__ import annotations

import orjson
from rich.table import Table

from loadtests.recorder import LoadResult


def to_json(result: LoadResult) -> str:
    """The result as one JSON document."""
    return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode()


def to_table(result: LoadResult) -> Table:
    """The result as a two-column rich table."""
    mode = (
        f"open loop, {result.target_rate:g} req/s due, at most {result.concurrency} in flight"
        if result.mode == "open"
        else f"closed loop, {result.concurrency} workers"
    )
    table = Table(title=f"abgate loadtest: {result.url}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("mode", mode)
    table.add_row("scenario", result.scenario)
    table.add_row("measured window", f"{result.duration_s:.2f} s")
    table.add_row("requests", f"{result.scheduled:,}")
    table.add_row("throughput (2xx)", f"{result.throughput:,.1f} req/s")
    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(result.statuses.items())) or "none"
    table.add_row("responses by status", statuses)
    errors = ", ".join(f"{k}: {n:,}" for k, n in sorted(result.errors.items())) or "none"
    table.add_row("no response", errors, style="red" if result.errors else None)
    for key, value in result.latency_ms.items():
        table.add_row(f"latency {key}", f"{value:,.3f} ms")
    if result.send_lag_ms:
        table.add_row(
            "generator send lag p99 / max",
            f"{result.send_lag_ms['p99']:,.3f} / {result.send_lag_ms['max']:,.3f} ms",
        )
    return table
