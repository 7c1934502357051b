"""``/metrics`` of ``abgate serve --workers N``: one answer for all the workers, whichever scrapes.

Each worker is a process with its own counters. Exposed from its own registry, a scrape showed
the counters of the worker that happened to accept it (54, 46, 54, ...), which Prometheus reads
as counter resets. In prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set
before the worker imports prometheus_client; ``abgate serve`` does it) every value lives in a
per-process file of that folder, and ``MultiProcessCollector`` adds them up at scrape time:

- counters and histograms: summed over every process that ever ran, dead ones included, so a
  counter never goes backwards when a worker restarts;
- gauges: each declares its ``multiprocess_mode`` in gateway/metrics.py (``livesum`` or
  ``livemax``: only living processes count). A worker that exits cleanly removes its ``live``
  files (``retire``); the files of one that was killed are removed at the next scrape
  (``prune_dead``), so a dead worker's queue or spool is never counted twice;
- ``process_*``: the standard process collector reads one process, so under multiprocess mode
  it would report whichever worker answered. ``WorkerProcessCollector`` reports every living
  worker instead, one series per worker labelled ``pid``.

Counters' ``_created`` samples do not exist in multiprocess mode.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_FILE_PID = re.compile(r"_(\d+)\.db$")
_LIVE_GAUGE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _parent(pid: int, proc: Path) -> int | None:
    """The parent pid of ``pid`` (from /proc), None if it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces


class WorkerProcessCollector:
    """``process_*`` of every living worker of this supervisor, labelled ``pid``.

    Workers are the processes that wrote a value file in the folder and share this process's
    parent (uvicorn's supervisor): a recycled pid of an unrelated process is not reported.
    """

    def __init__(self, folder: Path, proc: Path = Path("/proc")) -> None:
        self.folder = folder
        self.proc = proc

    def workers(self) -> list[int]:
        """The pids of the living workers, sorted."""
        supervisor = os.getppid()
        pids = set()
        for path in self.folder.glob("*.db"):
            match = _FILE_PID.search(path.name)
            if match is not None:
                pids.add(int(match.group(1)))
        return sorted(p for p in pids if _parent(p, self.proc) == supervisor)

    def collect(self) -> Iterator[Metric]:
        """One family per ``process_*`` metric, one sample per worker."""
        families: dict[str, Metric] = {}
        for pid in self.workers():
            one = ProcessCollector(
                pid=functools.partial(int, pid), proc=str(self.proc), registry=None
            )
            for family in one.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for s in family.samples:
                    merged.add_sample(s.name, {**s.labels, "pid": str(pid)}, s.value)
        yield from families.values()


def prune_dead(folder: Path) -> None:
    """Remove the live-gauge files of workers that died without ``retire`` (killed)."""
    for path in folder.glob("gauge_live*.db"):
        match = _LIVE_GAUGE.match(path.name)
        if match is not None and not _alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), str(folder))


def retire(folder: Path) -> None:
    """At a worker's clean exit: its gauges stop counting (its counters stay)."""
    mark_process_dead(os.getpid(), str(folder))


def multiprocess_registry(folder: Path) -> CollectorRegistry:
    """The registry a worker exposes: every worker's values, and their process metrics."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    registry.register(WorkerProcessCollector(folder))
    return registry
