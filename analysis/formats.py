"""The words and numbers of a report, shared by the terminal and HTML renderers.

Each returns plain text; a renderer adds its own markup (rich styles, HTML spans, escaping).
A figure that cannot be estimated (None or NaN) is an em dash.
"""

from __future__ import annotations

import math

from analysis.report import Interval

MISSING = "—"
DECISION_LABELS = {
    "ship": "Ship",
    "do_not_ship": "Do not ship",
    "keep_running": "Keep running",
    "invalid": "Invalid",
}


def number(x: float | None, fmt: str = ".4g") -> str:
    """``x`` in ``fmt`` (4 significant digits by default)."""
    return MISSING if x is None or math.isnan(x) else format(x, fmt)


def percent(x: float) -> str:
    """A signed percentage with two decimals: ``+1.23%``."""
    return MISSING if math.isnan(x) else f"{x:+.2%}"


def interval(ci: Interval, pct: bool = False) -> str:
    """``[lo, hi]`` in 3 significant digits, or as percentages; a dash if an end is missing."""
    if math.isnan(ci[0]) or math.isnan(ci[1]):
        return MISSING
    if pct:
        return f"[{percent(ci[0])}, {percent(ci[1])}]"
    return f"[{number(ci[0], '.3g')}, {number(ci[1], '.3g')}]"


def p_value(p: float | None) -> str:
    """A p-value with four decimals, ``<0.0001`` below that."""
    if p is None or math.isnan(p):
        return MISSING
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def significant(p: float | None, alpha: float) -> bool:
    """Whether ``p`` is below ``alpha`` (never for a missing p)."""
    return p is not None and not math.isnan(p) and p < alpha
