"""Allocation phases: the id of the allocation a unit is served under (pure).

Every exposure carries the ``phase`` it was served under and that phase's ``weights``
(docs/design.md, "Log records"), so that the report can check the sample ratio and stratify the
estimate per allocation from the archive alone (docs/analysts.md, "Phases"). A phase is an
*allocation*, not a period: the id is a digest of everything that decides which units are in
the experiment and which arm serves them, so any change to one of these starts a new phase, and
going back to an earlier allocation (90/10 -> 50/50 -> 90/10) gives the earlier id again:

- the salt, the variant keys in bucket order with their bucket bounds (weights normalised:
  50/50 and 1/1 are the same allocation), and the model version each arm serves (a re-pin is a
  new phase);
- the traffic share, the targeting condition;
- the layer (its salt), the experiment's slice of it, and the layer's holdout share.

Labels, metrics, status and forced QA units are not part of it: they change what is reported or
who is analysed, not who is allocated where.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from experiments.schema import Experiment

PHASE_ID_LENGTH = 12  # hex characters of the sha256 digest


class Phase(NamedTuple):
    """The phase an exposure is logged under: its id and its weights in bucket order."""

    id: str
    weights: tuple[dict[str, object], ...]  # ({"variant", "weight", "lo", "hi"}, ...), as logged


def phase_of(
    experiment: Experiment,
    layer_salt: str,
    layer_holdout: float,
    versions: Sequence[str | None],
) -> Phase:
    """The phase of ``experiment`` served with ``versions`` (one per variant, None: unresolved)."""
    if len(versions) != len(experiment.variants):
        raise ValueError("one served version per variant")
    canonical = {
        "salt": experiment.salt or experiment.key,
        "arms": [
            [v.key, bound, version]
            for v, bound, version in zip(
                experiment.variants, experiment.bounds, versions, strict=True
            )
        ],
        "traffic": repr(float(experiment.traffic)),
        "targeting": experiment.targeting,
        "layer": layer_salt,
        "slice": list(experiment.layer_slice),
        "holdout": repr(float(layer_holdout)),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:PHASE_ID_LENGTH]
    lows = (0, *experiment.bounds[:-1])
    weights = tuple(
        _logged_weight(v.key, v.weight, lo, hi)
        for v, lo, hi in zip(experiment.variants, lows, experiment.bounds, strict=True)
    )
    return Phase(digest, weights)


def _logged_weight(variant: str, weight: float, lo: int, hi: int) -> dict[str, object]:
    """``{"variant", "weight", "lo", "hi"}``: the arm's weight (50.0 as 50, as the YAML was
    written) and its bucket range ``[lo, hi)``, so that readers need no arithmetic to map a
    bucket to an arm (the report does it in SQL, where exact rational bounds are awkward)."""
    w = int(weight) if float(weight).is_integer() else weight
    return {"variant": variant, "weight": w, "lo": lo, "hi": hi}
