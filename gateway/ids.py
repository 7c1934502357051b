"""Cheap unique ids for the request path.

``uuid4()`` reads the kernel's random source on every call (a syscall); a gateway makes two
ids per request (request id, exposure event id). Here each process draws a random 80-bit
prefix once and appends a counter: ids stay unique across replicas and restarts (a collision
needs two processes to draw the same 80 bits), are 32 hex characters like ``uuid4().hex``,
and cost a string format.
"""

from __future__ import annotations

import itertools
import os


class IdGenerator:
    """32-hex-character ids: a per-instance random prefix and a 48-bit counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
