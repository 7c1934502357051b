"""Deterministic, stateless assignment of units to variants (DESIGN.md, "Assignment").

The bucket of a unit is the first 8 bytes of ``sha256(f"{salt}:{unit_id}")`` read big-endian,
modulo 10,000. Variants own contiguous bucket ranges in proportion to their weights, in file
order: variant i owns ``[floor(10000*W(i-1)/W), floor(10000*W(i)/W))``.

Everything here is pure: same inputs, same answer, on every replica, with no storage.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from fractions import Fraction

BUCKETS = 10_000


def python_bucket(salt: str, unit_id: str) -> int:
    """Bucket in ``[0, 10000)`` of ``unit_id`` under ``salt``."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


# bucket(salt, unit_id): the same in one C call (experiments/_bucket.c, ~6,000 instructions
# fewer, built at install where a C compiler and OpenSSL's headers are), else python_bucket.
bucket: Callable[[str, str], int]
try:
    from experiments._bucket import bucket
except ImportError:
    bucket = python_bucket


def bucket_bounds(weights: Sequence[float]) -> tuple[int, ...]:
    """Exclusive upper bucket bound of each variant, for weights in file order.

    The last bound is always 10,000. A variant of weight 0 owns an empty range.
    """
    # Exact rationals: floor(10000*W_i/W) must not depend on float rounding.
    exact = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact):
        raise ValueError("weights must not be negative")
    total = sum(exact, Fraction(0))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    bounds: list[int] = []
    cumulative = Fraction(0)
    for w in exact:
        cumulative += w
        bounds.append(math.floor(BUCKETS * cumulative / total))
    bounds[-1] = BUCKETS
    return tuple(bounds)


def variant_index(bounds: Sequence[int], b: int) -> int:
    """Index of the variant whose bucket range holds bucket ``b``."""
    return bisect_right(bounds, b)


def assign(salt: str, unit_id: str, keys: Sequence[str], weights: Sequence[float]) -> str:
    """The variant key of ``unit_id``: the one-call form of bucket + bounds + lookup."""
    return keys[variant_index(bucket_bounds(weights), bucket(salt, unit_id))]
