"""Layers: mutually exclusive experiments over one hash, and the layer's holdout (pure).

A layer spreads units over 10,000 buckets with its own hash, ``bucket(f"layer:{salt}", unit)``
(``sha256(f"layer:{salt}:{unit_id}")``); each experiment of the layer owns a slice
``[start, end)`` of those buckets, and slices of running experiments do not overlap, so a unit
is in at most one experiment of a layer. Different layers use different salts, so membership in
one layer's experiments says nothing about another's: they are orthogonal.

A holdout keeps a share of the layer's units out of every experiment of the layer, decided by a
third independent hash, ``bucket(f"layer:{salt}:holdout", unit)``. Raising the holdout only
adds units to it; slices keep the same units (among the units not held out).

A surface's experiments that name no layer share the surface's own layer, whose salt is
``surface:{name}`` and whose holdout is the surface's ``holdout``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from experiments.assignment import bucket
from experiments.traffic import share_threshold

T = TypeVar("T")


def surface_layer_salt(surface: str) -> str:
    """The salt of a surface's own layer (experiments that name no layer)."""
    return f"surface:{surface}"


def layer_bucket(layer_salt: str, unit_id: str) -> int:
    """The bucket of ``unit_id`` in a layer: ``bucket(f"layer:{salt}", unit_id)``."""
    return bucket(f"layer:{layer_salt}", unit_id)


def holdout_bucket(layer_salt: str, unit_id: str) -> int:
    """The holdout bucket of ``unit_id``: ``bucket(f"layer:{salt}:holdout", unit_id)``."""
    return bucket(f"layer:{layer_salt}:holdout", unit_id)


def in_holdout(layer_salt: str, unit_id: str, holdout: float) -> bool:
    """Whether ``unit_id`` is held out of every experiment of the layer."""
    return holdout > 0 and holdout_bucket(layer_salt, unit_id) < share_threshold(holdout)


def slice_bounds(start: float, end: float) -> tuple[int, int]:
    """The bucket range ``[lo, hi)`` of a layer slice given as shares ``[start, end)``."""
    lo, hi = share_threshold(start), share_threshold(end)
    if lo >= hi:
        raise ValueError(f"layer range [{start}, {end}) holds no bucket")
    return lo, hi


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two bucket ranges share a bucket."""
    return max(a[0], b[0]) < min(a[1], b[1])


@dataclass(frozen=True, slots=True)
class LayerPlan(Generic[T]):
    """The running experiments of one layer, ready for lookups: sorted, disjoint slices."""

    salt: str
    holdout_threshold: int
    lows: tuple[int, ...]
    highs: tuple[int, ...]
    members: tuple[T, ...]

    @classmethod
    def build(
        cls, salt: str, holdout: float, slices: Sequence[tuple[tuple[int, int], T]]
    ) -> LayerPlan[T]:
        """Plan a layer from ``((lo, hi), member)`` pairs; ValueError if two slices overlap."""
        ordered = sorted(slices, key=lambda s: s[0][0])
        for (a, _), (b, _) in pairwise(ordered):
            if overlap(a, b):
                raise ValueError(f"layer '{salt}': slices {a} and {b} overlap")
        return cls(
            salt,
            share_threshold(holdout),
            tuple(s[0][0] for s in ordered),
            tuple(s[0][1] for s in ordered),
            tuple(s[1] for s in ordered),
        )

    def held_out(self, unit_id: str) -> bool:
        """Whether the unit is in the layer's holdout."""
        return (
            self.holdout_threshold > 0
            and holdout_bucket(self.salt, unit_id) < self.holdout_threshold
        )

    def member(self, unit_id: str) -> T | None:
        """The member whose slice holds the unit's layer bucket (holdout not applied)."""
        if not self.members:
            return None
        if len(self.members) == 1 and self.lows[0] == 0 and self.highs[0] >= 10_000:
            return self.members[0]  # one experiment owning the whole layer: no hash needed
        b = layer_bucket(self.salt, unit_id)
        i = bisect_right(self.lows, b) - 1
        if i >= 0 and b < self.highs[i]:
            return self.members[i]
        return None
