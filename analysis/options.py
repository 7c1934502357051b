"""What a report computes beyond DESIGN.md's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """Optional methods beyond DESIGN.md's defaults (all off by default).

    cuped_window: CUPED with the same metric in this window before first exposure.
    sequential_tau: mSPRT always-valid p-values, mixture scale τ as a fraction of the control
        value (τ = sequential_tau·|control value|).
    power: target power for the MDE (e.g. 0.8); target_mde: relative effect for days-to-target.
    """

    cuped_window: timedelta | None = None
    sequential_tau: float | None = None
    power: float | None = None
    target_mde: float | None = None
    segment: str | None = None  # --by: the request attribute to break the figures down by
