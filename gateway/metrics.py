"""Prometheus metrics of one gateway app (own registry, so several apps can live in one process).

Under ``abgate serve --workers N`` the values are shared through prometheus-client's
multiprocess mode (gateway/worker_metrics.py). Each gauge says how the workers' values combine
(``multiprocess_mode``; ignored in a single process): ``livesum`` for amounts held by each
worker (records in its queue, in its spool slot), whose total is what the gateway holds;
``livemax`` for a state that matters if any worker is in it (a spool full). Only living workers
count: a dead worker's queue is gone and its spool slot is counted by the worker that took it
over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from gateway.worker_metrics import multiprocess_registry, prune_dead, retire


class Metrics:
    """Every metric the gateway exports on ``GET /metrics``.

    ``multiprocess_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` of ``--workers`` processes; the
    export is then every worker's (None: this process's, with its ``process_*`` metrics).
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.requests = Counter(
            "abgate_requests", "Answered requests", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "abgate_request_seconds",
            "Time to answer, by endpoint",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.served = Counter(
            "abgate_served",
            "Recommendation answers by surface and source",
            ["surface", "source"],
            registry=r,
        )
        self.exposures = Counter(
            "abgate_exposures", "Exposures logged", ["experiment", "variant"], registry=r
        )
        self.outcomes = Counter("abgate_outcomes", "Outcome events accepted", registry=r)
        self.cache_lookups = Counter(
            "abgate_cache_lookups",
            "Cache lookups by layer and result",
            ["layer", "result"],
            registry=r,
        )
        self.store_errors = Counter(
            "abgate_store_errors", "Postgres failures on the read path", registry=r
        )
        self.log_queue = Gauge(
            "abgate_log_queue_records",
            "Records waiting to be written",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_written = Counter(
            "abgate_log_records_written", "Records written to the sink", registry=r
        )
        self.log_dropped = Counter(
            "abgate_log_records_dropped", "Records dropped because the queue was full", registry=r
        )
        self.log_errors = Counter(
            "abgate_log_write_errors", "Failed sink writes (retried)", registry=r
        )
        self.log_spool_records = Gauge(
            "abgate_log_spool_records",
            "Records waiting in the on-disk spool",
            ["sink"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_spool_bytes = Gauge(
            "abgate_log_spool_bytes",
            "Bytes of the on-disk spool",
            ["sink"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_spool_full = Gauge(
            "abgate_log_spool_full",
            "1 while the spool cannot take records (ABGATE_SPOOL_FULL applies)",
            ["sink"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.log_spooled = Counter(
            "abgate_log_records_spooled", "Records moved to the on-disk spool", ["sink"], registry=r
        )
        self.log_refused = Counter(
            "abgate_log_refused",
            "Experiment requests and events refused with 503 while the spool is full "
            "(ABGATE_SPOOL_FULL=refuse)",
            registry=r,
        )
        self.rate_limited = Counter(
            "abgate_rate_limited", "Requests refused with 429, by key name", ["key"], registry=r
        )
        # labels() hashes its arguments and takes a lock on every call: keep the children.
        self.lookup = {
            (layer, result): self.cache_lookups.labels(layer, result)
            for layer in ("local", "redis")
            for result in ("hit", "miss", "error")
        }
        self._served: dict[tuple[str, str], Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        self._exposures: dict[tuple[str, str], Any] = {}
        # Exposures counted in plain integers on the request path (a child's inc() takes a
        # lock) by the exposure encoder (gateway/exposure_json.py), added to
        # ``abgate_exposures`` at each scrape and after each log flush. One dict for the
        # process's life: the encoder holds it.
        self.exposure_counts: dict[tuple[str, str], int] = {}
        self._limited: dict[str, Any] = {}
        self._queued: dict[str, int] = {}
        if multiprocess_dir is None:
            ProcessCollector(registry=r)
            self._export = r
        else:
            self._export = multiprocess_registry(multiprocess_dir)

    def export(self) -> bytes:
        """The text of ``GET /metrics``."""
        self.sync_exposures()
        if self.multiprocess_dir is not None:
            prune_dead(self.multiprocess_dir)
        return generate_latest(self._export)

    def retire(self) -> None:
        """At shutdown: under ``--workers``, this worker's gauges stop counting."""
        if self.multiprocess_dir is not None:
            retire(self.multiprocess_dir)

    def set_queued(self, sink: str, records: int) -> None:
        """One sink's queue length; ``abgate_log_queue_records`` is their total."""
        self._queued[sink] = records
        self.log_queue.set(sum(self._queued.values()))

    def request_child(self, endpoint: str, status: int) -> Any:
        """The ``abgate_requests`` counter of one endpoint and status."""
        key = (endpoint, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(endpoint, str(status))
        return child

    def served_child(self, surface: str, source: str) -> Any:
        """The ``abgate_served`` counter of one surface and source."""
        key = (surface, source)
        child = self._served.get(key)
        if child is None:
            child = self._served[key] = self.served.labels(surface, source)
        return child

    def sync_exposures(self) -> None:
        """Add the exposures counted since the last call to ``abgate_exposures``."""
        counts = self.exposure_counts
        if not counts:
            return
        taken = list(counts.items())
        counts.clear()  # in place: the encoder counts into this dict
        for (experiment, variant), n in taken:
            child = self._exposures.get((experiment, variant))
            if child is None:
                child = self._exposures[experiment, variant] = self.exposures.labels(
                    experiment, variant
                )
            child.inc(n)

    def rate_limited_child(self, key: str) -> Any:
        """The ``abgate_rate_limited`` counter of one key."""
        child = self._limited.get(key)
        if child is None:
            child = self._limited[key] = self.rate_limited.labels(key)
        return child
