"""Per-key rate limits: a token bucket in the process, no I/O on the request path.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second; a request takes one.
The limit is per gateway process: with ``--workers N`` each worker gets ``rate / N`` (connections
are spread evenly by the kernel), and with R replicas a key's total is R times its rate.
docs/operators.md gives the measurement that chose this over a bucket shared in Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """Requests per second of ``500/s``, ``3000/m`` or ``10000/h``; ValueError otherwise."""
    m = _RATE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"rate '{text}' is not like 500/s, 3000/m or 10000/h")
    return float(m.group(1)) / _PER[m.group(2)]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float) -> float:
        """Take one token at ``now`` (monotonic seconds): 0.0, or the seconds until one is due."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def describe(self) -> str:
        """The rate as a person reads it."""
        return f"{self.rate:g}/s (burst {self.burst:g}) in this process"
