"""Lifecycle of a stored experiment, and the changes that would reshuffle its units (pure).

    draft ──start──▶ running ──pause──▶ paused
                     ▲   │  ◀──resume──  │
                     │   └──stop──▶ stopped ◀──stop──┘
                     │                │
        start (new salt only)◀────────┤──archive──▶ archived
    draft ──archive──▶ archived

A stopped experiment cannot start again under a salt it already ran with: its units were
exposed, and the same salt would put them back in the same variants, polluting the new run.

The errors raised here and by the store are drawn in experiments/errors.py.
"""

from __future__ import annotations

from typing import Literal

from experiments.errors import LifecycleError
from experiments.schema import Experiment, Status

Action = Literal["create", "apply", "start", "pause", "resume", "stop", "archive"]

TRANSITIONS: dict[tuple[Status, str], Status] = {
    ("draft", "start"): "running",
    ("draft", "archive"): "archived",
    ("running", "pause"): "paused",
    ("running", "stop"): "stopped",
    ("paused", "resume"): "running",
    ("paused", "stop"): "stopped",
    ("stopped", "start"): "running",
    ("stopped", "archive"): "archived",
}
# The action that moves a stored experiment to the status a file asks for.
ACTION_TO: dict[tuple[Status, Status], str] = {
    (frm, to): action for (frm, action), to in TRANSITIONS.items()
}


def next_status(key: str, current: Status, action: str) -> Status:
    """The status after ``action``; LifecycleError naming what is allowed otherwise."""
    to = TRANSITIONS.get((current, action))
    if to is None:
        allowed = sorted(a for (frm, a) in TRANSITIONS if frm == current) or [
            "nothing (archived is final)"
        ]
        raise LifecycleError(
            f"experiment '{key}' is {current}: cannot {action} (allowed: {', '.join(allowed)})"
        )
    return to


def reshuffling_changes(old: Experiment, new: Experiment) -> list[str]:
    """Changes from ``old`` to ``new`` that move units between variants or experiments.

    Weight, traffic and layer_range changes are ramps (they move the fewest units the bucket
    formula allows) and are not listed; salt changes, removed or reordered variants and a
    change of layer re-deal units and are.
    """
    changes: list[str] = []
    if old.salt != new.salt:
        changes.append(f"salt changes from '{old.salt}' to '{new.salt}' (every unit is re-dealt)")
    removed = [k for k in old.variant_keys if k not in new.variant_keys]
    if removed:
        changes.append(
            f"variant(s) {', '.join(removed)} removed (their units move to other variants)"
        )
    kept_old = [k for k in old.variant_keys if k in new.variant_keys]
    kept_new = [k for k in new.variant_keys if k in old.variant_keys]
    if kept_old != kept_new:
        changes.append(
            f"variants reordered from {kept_old} to {kept_new} (bucket ranges follow file order)"
        )
    elif new.variant_keys[: len(kept_new)] != tuple(kept_new):
        changes.append("a variant is inserted before existing ones (add new variants at the end)")
    if old.layer_id != new.layer_id:
        changes.append(
            f"layer changes from '{old.layer_id}' to '{new.layer_id}' (layer membership is re-dealt)"
        )
    return changes


def salt_change_note(old: Experiment, new: Experiment) -> str:
    """What a forced salt change of a started experiment means for its report (a warning of
    ``apply``): the runs before and after are two randomisations, reported apart."""
    return (
        f"salt changed from '{old.salt}' to '{new.salt}': every unit is dealt again. A report "
        f"with this version analyses the units enrolled under '{new.salt}' from their first "
        f"exposure under it and leaves the phases of '{old.salt}' out (with a warning); report "
        f"the earlier run with the earlier version (abgate experiments show {new.key} "
        '--version N). docs/analysts.md, "Salt changes"'
    )
