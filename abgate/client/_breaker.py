"""A circuit breaker over the gateway: after ``threshold`` failures in a row, stop asking it
for ``reset_after`` seconds (callers get the fallback at once), then let one probe through.

States: closed (ask) -> open (do not ask) -> half-open (one probe in flight; its success
closes, its failure reopens). Pure: the caller passes the clock, and a lock keeps it right
when the sync client is shared by threads.
"""

from __future__ import annotations

import threading


class CircuitBreaker:
    """Counts consecutive failures; ``allow(now)`` says whether to ask the gateway."""

    def __init__(self, threshold: int = 5, reset_after: float = 2.0) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be at least 1, got {threshold}")
        if reset_after <= 0:
            raise ValueError(f"breaker reset_after must be positive, got {reset_after}")
        self.threshold = threshold
        self.reset_after = reset_after
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self, now: float) -> bool:
        """True if a request may go to the gateway now (taking the probe when half-open)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or now - self._opened_at < self.reset_after:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        """The gateway answered: close."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def failure(self, now: float) -> None:
        """The gateway failed or was late: count it, open at the threshold (or a failed probe)."""
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = now
                self._probing = False
