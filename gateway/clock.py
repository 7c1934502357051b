"""Timestamps for records, formatted once per second rather than once per record."""

from __future__ import annotations

import time


class UtcClock:
    """``2026-11-26T18:04:30.123456Z`` for now, caching the part up to the second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        """The current UTC time in the records' format (microseconds, ``Z``)."""
        second, ns = divmod(time.time_ns(), 1_000_000_000)  # integers: no float rounding
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._prefix}{ns // 1000:06d}Z"
