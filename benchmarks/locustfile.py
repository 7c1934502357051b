"""The ``abgate loadtest`` scenario for teams that already run Locust.

Locust is not a dependency of abgate: install it beside abgate (``.venv/bin/pip install
locust``), or in a venv of its own with what ``loadtests`` imports (``pip install locust
orjson hdrhistogram httptools rich``) and run from the repository root with ``PYTHONPATH=.``:

    locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 64 -r 64 -t 60s

Knobs are environment variables, named as ``abgate loadtest``'s options:
``ABGATE_LT_SURFACE`` (home_top), ``ABGATE_LT_SCENARIO`` (uniform | hot | cold),
``ABGATE_LT_UNITS`` (100000), ``ABGATE_LT_HOT_UNITS`` (1000), ``ABGATE_LT_UNKNOWN_SHARE`` (0),
``ABGATE_LT_EXCLUSIONS`` (20), ``ABGATE_LT_LIMIT`` (10), ``ABGATE_LT_RATE`` (per user and
second; unset: as fast as possible), ``ABGATE_LT_TOKEN`` (bearer token).

Locust is a closed-loop tool: each user waits for its answer before the next request, so a
slow server gets fewer requests and its latency percentiles are flattered (coordinated
omission). ``constant_throughput`` pacing softens this only while users keep up. For latency
at a given arrival rate, use ``abgate loadtest`` (open loop).
"""

from __future__ import annotations

import dataclasses
import os
from itertools import count

from locust import FastHttpUser, constant_throughput, task

from loadtests.scenario import Scenario, UnitChoice

_env = os.environ.get
SCENARIO = Scenario(
    surface=_env("ABGATE_LT_SURFACE", "home_top"),
    kind=UnitChoice(_env("ABGATE_LT_SCENARIO", "uniform")),
    units=int(_env("ABGATE_LT_UNITS", "100000")),
    hot_units=int(_env("ABGATE_LT_HOT_UNITS", "1000")),
    unknown_share=float(_env("ABGATE_LT_UNKNOWN_SHARE", "0")),
    exclusions=int(_env("ABGATE_LT_EXCLUSIONS", "20")),
    limit=int(_env("ABGATE_LT_LIMIT", "10")),
)
HEADERS = {"Content-Type": "application/json"}
if _env("ABGATE_LT_TOKEN"):
    HEADERS["Authorization"] = f"Bearer {_env('ABGATE_LT_TOKEN')}"
_user_numbers = count()


class RecommendationsUser(FastHttpUser):
    """One caller of ``POST /v1/recommendations``."""

    if _env("ABGATE_LT_RATE"):
        wait_time = constant_throughput(float(_env("ABGATE_LT_RATE", "1")))

    def on_start(self) -> None:
        """Each user walks its own part of the unit space in the cold scenario."""
        n = next(_user_numbers)
        start = n * 1_000_003 % SCENARIO.units if SCENARIO.kind is UnitChoice.cold else 0
        self.bodies = dataclasses.replace(SCENARIO, start=start, seed=n).bodies()

    @task
    def recommend(self) -> None:
        """One request; any non-2xx answer is a failure."""
        self.client.post(
            "/v1/recommendations",
            data=self.bodies.body(),
            headers=HEADERS,
            name="/v1/recommendations",
        )
