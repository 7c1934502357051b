"""What a run measured: latency and generator-lag histograms, statuses, errors.

Latencies go into an HdrHistogram in microseconds (3 significant digits, up to an hour),
so p99.9 is as exact as p50 and two histograms add up without loss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_MAX_US = 3_600_000_000


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, _MAX_US, 3)


class Recorder:
    """Collects one run's observations; ``recording`` is off during warm-up."""

    __slots__ = ("errors", "lag", "latency", "recording", "statuses")

    def __init__(self) -> None:
        self.latency = new_histogram()
        self.lag = new_histogram()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.recording = True

    def response(self, status: int, seconds: float) -> None:
        """A response arrived ``seconds`` after the request was due (open loop) or sent."""
        self.statuses[status] += 1
        self.latency.record_value(min(max(int(seconds * 1e6), 1), _MAX_US))

    def error(self, kind: str) -> None:
        """A request got no response (``timeout``, ``ConnectError``, ``ConnectionLost`` …)."""
        self.errors[kind] += 1

    def send_lag(self, seconds: float) -> None:
        """How late the generator sent a request after its due time (open loop only)."""
        self.lag.record_value(min(max(int(seconds * 1e6), 1), _MAX_US))


def percentiles_ms(h: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9 and max of a microsecond histogram, in milliseconds."""
    if h.get_total_count() == 0:
        return {**{_key(p): 0.0 for p in PERCENTILES}, "max": 0.0, "mean": 0.0}
    out = {_key(p): h.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = h.get_max_value() / 1000
    out["mean"] = round(h.get_mean_value() / 1000, 3)
    return out


def _key(p: float) -> str:
    return f"p{p:g}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The outcome of one load run."""

    mode: str  # "open" or "closed"
    url: str
    scenario: str
    duration_s: float  # measured window
    concurrency: int
    target_rate: float | None  # open loop only
    scheduled: int  # requests due in the measured window (open loop) or sent (closed loop)
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        """Requests that got an HTTP response, whatever its status."""
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        """Requests answered with a 2xx status."""
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def throughput(self) -> float:
        """2xx responses per second over the measured window."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> int:
        """Requests with a non-2xx status or no response at all."""
        return self.responses - self.ok + sum(self.errors.values())

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the ``--json`` output)."""
        return {
            "mode": self.mode,
            "url": self.url,
            "scenario": self.scenario,
            "duration_s": round(self.duration_s, 3),
            "concurrency": self.concurrency,
            "target_rate": self.target_rate,
            "scheduled": self.scheduled,
            "responses": self.responses,
            "ok": self.ok,
            "failed": self.failed,
            "throughput_rps": round(self.throughput, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": self.latency_ms,
            "send_lag_ms": self.send_lag_ms,
        }
