"""A circuit breaker: after a failure, callers skip a backend for a while."""

from __future__ import annotations

import time


class Breaker:
    """After a failure, tell callers to skip a backend for ``retry_after`` seconds, so that a
    down or hung server does not add its timeout to every request."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._down_until = 0.0

    @property
    def closed(self) -> bool:
        """True when the backend may be called (no recent failure)."""
        return time.monotonic() >= self._down_until

    def trip(self) -> None:
        """Record a failure: open for ``retry_after`` seconds from now."""
        self._down_until = time.monotonic() + self.retry_after
