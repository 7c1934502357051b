"""The looks reshaped for the statistics: per day, phase -> variant -> aggregates.

A look is the data as of the end of one UTC day (``analysis.sql.Look``); several rows of one
(day, phase, variant), one per ``--by`` segment, merge exactly (``Aggregates.__add__``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from analysis.aggregates import Aggregates
from analysis.sql import HOLDOUT, Look

ByPhase = dict[str, dict[str, Aggregates]]  # phase -> variant -> aggregates


def series(looks: Iterable[Look]) -> list[tuple[date, ByPhase]]:
    """The looks in day order, each as phase -> variant -> aggregates (segments merged).

    Several rows of one (day, phase, variant), one per ``--by`` segment, merge exactly
    (``Aggregates.__add__``); a variant with no unit yet is absent.
    """
    by_day: dict[date, ByPhase] = {}
    seen: set[tuple[date, str, str, str | None]] = set()
    for look in looks:
        key = (look.day, look.phase, look.variant, look.segment)
        if key in seen:
            raise ValueError(f"two looks of variant {look.variant!r} on {look.day}")
        seen.add(key)
        arms = by_day.setdefault(look.day, {}).setdefault(look.phase, {})
        arms[look.variant] = arms.get(look.variant, Aggregates()) + look.stats
    return sorted(by_day.items())


def pooled(by_phase: Mapping[str, Mapping[str, Aggregates]]) -> dict[str, Aggregates]:
    """variant -> aggregates over every phase."""
    out: dict[str, Aggregates] = {}
    for arms in by_phase.values():
        for v, a in arms.items():
            out[v] = out.get(v, Aggregates()) + a
    return out


def arms_only(by_phase: Mapping[str, Mapping[str, Aggregates]]) -> ByPhase:
    """``by_phase`` without the holdout pseudo-arm."""
    return {k: {v: a for v, a in arms.items() if v != HOLDOUT} for k, arms in by_phase.items()}
