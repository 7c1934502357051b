"""Load generation against a running gateway (HTTP only): the runtime of ``abgate loadtest``.

Public API: the scenario, the two run modes, the result and its renderings. The benchmarks
(``python -m benchmarks.gateway`` ...) and the Locust file live in the clone's ``benchmarks/``,
not in this package.
"""

from __future__ import annotations

from loadtests.recorder import LoadResult
from loadtests.report import to_json, to_table
from loadtests.runner import run, run_closed_loop, run_open_loop
from loadtests.scenario import Scenario, UnitChoice

__all__ = [
    "LoadResult",
    "Scenario",
    "UnitChoice",
    "run",
    "run_closed_loop",
    "run_open_loop",
    "to_json",
    "to_table",
]
