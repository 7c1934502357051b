"""Fixtures of the batch tests: a migrated pool on this test's schema, small result files."""

from __future__ import annotations

import pyarrow as pa


def ranked(prefix: str, n: int = 5) -> list[dict[str, object]]:
    """``prefix-0 .. prefix-(n-1)`` with decreasing scores."""
    return [{"id": f"{prefix}-{i}", "score": round(1 - i / n, 4)} for i in range(n)]


def version_rows(
    version: str, units: int = 20, n: int = 5
) -> list[tuple[str, list[dict[str, object]]]]:
    """Rows of a version whose item ids say which version and unit they belong to."""
    rows = [(f"u{i}", ranked(f"v{version}-u{i}", n)) for i in range(units)]
    return [*rows, ("__default__", ranked(f"v{version}-default", n))]


def long_csv(rows: list[tuple[str, list[dict[str, object]]]], rank: bool = False) -> str:
    """The long CSV of ``rows`` (with a rank column in reverse file order when asked)."""
    head = "unit_id,item_id,score" + (",rank" if rank else "") + "\n"
    lines = []
    for unit, items in rows:
        seq = list(enumerate(items))
        for r, it in reversed(seq) if rank else seq:
            lines.append(f"{unit},{it['id']},{it['score']}" + (f",{r + 1}" if rank else ""))
    return head + "\n".join(lines) + "\n"


def wide_table(rows: list[tuple[str, list[dict[str, object]]]]) -> pa.Table:
    """``rows`` as a wide table: ``unit_id, item_ids: list<string>, scores: list<double>``."""
    return pa.table(
        {
            "unit_id": [u for u, _ in rows],
            "item_ids": [[it["id"] for it in items] for _, items in rows],
            "scores": [[it["score"] for it in items] for _, items in rows],
        }
    )
