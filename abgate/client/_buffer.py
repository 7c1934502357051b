"""The bounded buffer of events waiting to be sent, and its loss policy.

- ``track`` adds an event unless the buffer (events waiting plus those in flight) holds
  ``max_events``: then the NEW event is refused, ``track`` returns False and ``refused``
  counts it. Events already buffered are never displaced: the oldest outcomes are the ones
  an outage has kept longest, and a caller who must not lose one can see the refusal.
- A batch that gets no usable answer (connection error, timeout, 5xx) goes back to the front
  of the buffer, in order, with the same ``event_id``s: a resent event that the gateway had in
  fact recorded is a duplicate that readers drop by ``event_id``.
- An element the gateway rejects as invalid is dropped and counted (``rejected``); one it
  could not queue (``dropped``: its log was full) is resent.
- ``close`` sends until the buffer is empty or its timeout passes; what is left is ``lost``.
"""

from __future__ import annotations

import threading
from collections import deque

from abgate.client._models import Event, EventResult, EventStats


class EventBuffer:
    """Events waiting to be sent; thread-safe."""

    def __init__(self, max_events: int, batch_size: int) -> None:
        if max_events < 1:
            raise ValueError(f"max_buffered_events must be at least 1, got {max_events}")
        if not 1 <= batch_size <= max_events:
            raise ValueError(
                f"event batch_size must be between 1 and max_buffered_events, got {batch_size}"
            )
        self.max_events = max_events
        self.batch_size = batch_size
        self.stats = EventStats()
        self._waiting: deque[Event] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Events not yet accepted: waiting and in flight."""
        return len(self._waiting) + self._in_flight

    def add(self, event: Event) -> bool:
        """Buffer ``event``; False (and counted) when the buffer is full."""
        with self._lock:
            self.stats.tracked += 1
            if len(self._waiting) + self._in_flight >= self.max_events:
                self.stats.refused += 1
                return False
            self._waiting.append(event)
            return True

    @property
    def waiting(self) -> int:
        """Events waiting to be sent (not in flight)."""
        return len(self._waiting)

    @property
    def batch_ready(self) -> bool:
        """True when a full batch is waiting."""
        return len(self._waiting) >= self.batch_size

    def take(self) -> list[Event]:
        """The next batch (up to ``batch_size``, oldest first), now in flight."""
        with self._lock:
            n = min(self.batch_size, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(n)]
            self._in_flight += n
            return batch

    def settle(self, batch: list[Event], results: list[EventResult] | None) -> None:
        """Record the gateway's answer for ``batch``: None (no usable answer) resends it all."""
        with self._lock:
            self._in_flight -= len(batch)
            self.stats.batches += 1
            if results is None:
                self.stats.failed_batches += 1
                self._waiting.extendleft(reversed(batch))
                return
            resend = []
            for event, result in zip(batch, results, strict=True):
                if result.status == "accepted":
                    self.stats.sent += 1
                elif result.status == "rejected":
                    self.stats.rejected += 1
                    self.stats.last_error = f"{result.field}: {result.detail}"
                else:
                    resend.append(event)
            self._waiting.extendleft(reversed(resend))

    def give_up(self) -> int:
        """Drop what is left (close timed out): count it as lost and return how many."""
        with self._lock:
            n = len(self._waiting)
            self.stats.lost += n
            self._waiting.clear()
            return n
