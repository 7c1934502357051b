"""What the load looks like: which units, how many exclusions, which surface.

A scenario turns a request number into a request body. Unit choice by kind:

- ``uniform``: a random unit among ``units`` (most answers come from Redis once it is warm);
- ``hot``: a random unit among the first ``hot_units`` (the in-process cache's case);
- ``cold``: every request a unit not asked for before in this run, walking the unit space
  from ``start`` (with the cache flushed first, the Postgres path);

and, whatever the kind, a share ``unknown_share`` of requests for units that have no stored
list (the fallback path). Exclusions are random item ids among ``catalog`` items, as
benchmarks/gateway/lua/post.lua sends them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

import orjson


class UnitChoice(StrEnum):
    """How a scenario picks the unit of each request."""

    uniform = "uniform"
    hot = "hot"
    cold = "cold"


@dataclass(frozen=True, slots=True)
class Scenario:
    """The request mix. Defaults match post.lua: 100,000 units, 20 exclusions, limit 10."""

    surface: str = "home_top"
    kind: UnitChoice = UnitChoice.uniform
    units: int = 100_000
    hot_units: int = 1_000
    start: int = 0
    unit_prefix: str = "u"
    unknown_share: float = 0.0
    exclusions: int = 20
    catalog: int = 50_000
    limit: int = 10
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.units < 1 or self.hot_units < 1:
            raise ValueError("units and hot_units must be at least 1")
        if not 0.0 <= self.unknown_share <= 1.0:
            raise ValueError(f"unknown_share must be within [0, 1], got {self.unknown_share}")
        if self.exclusions < 0 or self.limit < 1 or self.catalog < 1:
            raise ValueError("exclusions must be >= 0, limit and catalog >= 1")

    def bodies(self) -> BodyFactory:
        """A fresh body factory (its own random state) for one run."""
        return BodyFactory(self)


class BodyFactory:
    """Makes the JSON body of request number ``n`` of a scenario."""

    __slots__ = ("_cold_next", "_exclusions", "_head", "_rng", "_tail", "scenario")

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._rng = random.Random(scenario.seed)
        self._cold_next = scenario.start
        # Pre-encoded constant fragments: only the unit and the exclusions vary.
        self._head = b'{"surface":%s,"unit_id":"' % orjson.dumps(scenario.surface)
        self._tail = b',"limit":%d}' % scenario.limit
        # Exclusion lists are drawn once, up to about 4 MB of them, and picked per request:
        # drawing 20 random ids per request cost the generator a quarter of its time.
        rng = self._rng
        pool = max(16, min(4096, 4_000_000 // (scenario.exclusions * 12 + 1)))
        self._exclusions = [
            b",".join(
                b'"sku-%d"' % rng.randrange(scenario.catalog) for _ in range(scenario.exclusions)
            )
            for _ in range(pool)
        ]

    def unit(self) -> str:
        """The unit id of the next request."""
        s, rng = self.scenario, self._rng
        if s.unknown_share and rng.random() < s.unknown_share:
            return f"unknown-{rng.getrandbits(48):x}"
        if s.kind is UnitChoice.hot:
            return f"{s.unit_prefix}{rng.randrange(min(s.hot_units, s.units))}"
        if s.kind is UnitChoice.cold:
            n = self._cold_next
            self._cold_next += 1
            return f"{s.unit_prefix}{n % s.units}"
        return f"{s.unit_prefix}{rng.randrange(s.units)}"

    def body(self) -> bytes:
        """The next request body."""
        unit = self.unit().encode()
        excl = self._exclusions[self._rng.getrandbits(32) % len(self._exclusions)]
        return b'%s%s","exclude":[%s]%s' % (self._head, unit, excl, self._tail)
