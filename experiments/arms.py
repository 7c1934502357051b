"""Alias arms: the variants of an experiment that name their model through an alias.

Such an arm is pinned to the version its alias names when the experiment is first seen
running, and keeps serving it (experiments/store/pins.py writes the pins; docs/experiments.md,
"Pinned arms").
"""

from __future__ import annotations

from typing import NamedTuple

from experiments.modelref import ModelRef
from experiments.schema import Experiment


class AliasArm(NamedTuple):
    """A variant of a running experiment that names its model through an alias."""

    experiment: str
    variant: str
    ref: ModelRef


def alias_arms(experiment: Experiment, variant: str | None = None) -> list[AliasArm]:
    """The alias arms of ``experiment`` (only ``variant``'s when given; VariantNotFound if unknown)."""
    variants = [experiment.variant(variant)] if variant is not None else experiment.variants
    return [
        AliasArm(experiment.key, v.key, v.model_ref)
        for v in variants
        if v.model_ref.alias is not None
    ]
