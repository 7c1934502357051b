"""A log line for repeated failures, written at most once per interval with the count.

A failing disk or a hostile caller can fail many times a second; a line (with a trace) per
failure buried the gateway's log (~100 tracebacks a second with the archive on a full disk).
"""

from __future__ import annotations

import logging
import time


class Throttled:
    """``note()`` each occurrence; a line is logged at the first one and then at most once per
    ``interval`` seconds, with ``occurrences`` (since the previous line) and the last error."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        level: int = logging.WARNING,
        interval: float = 60.0,
    ) -> None:
        self.logger = logger
        self.message = message
        self.level = level
        self.interval = interval
        self.pending = 0  # occurrences not reported yet
        self._logged_at: float | None = None

    def note(self, error: str, **extra: object) -> None:
        """Count one occurrence; log if the interval has passed since the last line."""
        self.pending += 1
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= self.interval:
            self._logged_at = now
            self.logger.log(
                self.level,
                self.message,
                extra={"occurrences": self.pending, "error": error, **extra},
            )
            self.pending = 0
