"""Traffic allocation and the movement guarantees of weight ramps (pure functions).

Traffic uses its **own** hash, independent of the variant hash (DESIGN.md, "Assignment"): a
unit is in the experiment when ``bucket(f"{salt}:traffic", unit_id) < threshold(traffic)``,
i.e. the first 8 bytes of ``sha256(f"{salt}:traffic:{unit_id}")`` modulo 10,000. Because the
gate compares one fixed number with a threshold, raising ``traffic`` only ever adds units, and
the variant of a unit depends on the variant hash alone, so a unit that was in stays in, in the
same variant. Re-using the variant bucket for the gate (``bucket < traffic*10000``) would keep
only the low buckets, i.e. mostly the first variant: the skew other SDKs are known for.

Weight ramps keep DESIGN.md's contiguous ranges; ``moved_buckets`` and ``minimal_moves``
measure what a ramp moves, and docs/experiments.md states the guarantee they test.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from experiments.assignment import BUCKETS, bucket, bucket_bounds


def share_threshold(share: float) -> int:
    """Buckets below which a unit is in, for a share in ``[0, 1]`` (exact, no float drift)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    return round(Fraction(str(share)) * BUCKETS)


def traffic_bucket(salt: str, unit_id: str) -> int:
    """The traffic bucket of ``unit_id``: ``bucket(f"{salt}:traffic", unit_id)``."""
    return bucket(f"{salt}:traffic", unit_id)


def in_traffic(salt: str, unit_id: str, traffic: float) -> bool:
    """Whether ``unit_id`` is inside an experiment allocated ``traffic`` of the units."""
    return traffic_bucket(salt, unit_id) < share_threshold(traffic)


def _ranges(bounds: Sequence[int]) -> list[tuple[int, int]]:
    lows = [0, *bounds[:-1]]
    return list(zip(lows, bounds, strict=True))


def moved_buckets(old_weights: Sequence[float], new_weights: Sequence[float]) -> int:
    """Buckets whose variant changes when weights go from old to new (same variants, same order)."""
    if len(old_weights) != len(new_weights):
        raise ValueError("a ramp keeps the same variants in the same order")
    old = _ranges(bucket_bounds(old_weights))
    new = _ranges(bucket_bounds(new_weights))
    kept = sum(
        max(0, min(oh, nh) - max(ol, nl)) for (ol, oh), (nl, nh) in zip(old, new, strict=True)
    )
    return BUCKETS - kept


def minimal_moves(old_weights: Sequence[float], new_weights: Sequence[float]) -> int:
    """The fewest buckets any allocation could move for this ramp: the total variation distance.

    A variant that shrinks from n to n' buckets must lose at least n - n'; nothing else has to
    move, so the minimum is the sum of the shrinkages (equal to the sum of the growths).
    """
    old = _ranges(bucket_bounds(old_weights))
    new = _ranges(bucket_bounds(new_weights))
    return sum(max(0, (oh - ol) - (nh - nl)) for (ol, oh), (nl, nh) in zip(old, new, strict=True))
