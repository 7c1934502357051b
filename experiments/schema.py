"""The configuration objects: experiments, surfaces and layers (DESIGN.md, "Experiment file").

Pydantic models, frozen, unknown fields forbidden; derived defaults (``salt`` = ``key``,
``control`` = first variant, ``fallback`` = ``control``) are filled at validation. Reading them
from YAML files with located errors is experiments/config.py's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from experiments.assignment import bucket_bounds
from experiments.errors import TargetingError, VariantNotFound
from experiments.layers import slice_bounds, surface_layer_salt
from experiments.modelref import ModelRef
from experiments.targeting import Condition, compile_condition

Status = Literal["draft", "running", "paused", "stopped", "archived"]
MetricKind = Literal["proportion", "mean", "ratio"]
MetricRole = Literal["primary", "secondary", "guardrail"]
Direction = Literal["increase", "decrease"]

_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
Key = Annotated[str, Field(pattern=_KEY)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
_MAX_FORCED = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Variant(_Strict):
    """One arm of an experiment: a share of traffic served by one model version."""

    key: Key
    weight: float = Field(ge=0)
    model: str

    @field_validator("model")
    @classmethod
    def _model_is_a_reference(cls, v: str) -> str:
        ModelRef.parse(v)
        return v

    @field_validator("weight")
    @classmethod
    def _weight_is_finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @property
    def model_ref(self) -> ModelRef:
        """The parsed model reference."""
        return ModelRef.parse(self.model)


class Cap(_Strict):
    """Winsorising of a mean metric: unit totals above the P-th percentile of the pooled units are cut to it."""

    percentile: float = Field(gt=0, lt=100)


class Metric(_Strict):
    """A metric computed by the report from outcome records (DESIGN.md, "Metrics and the report").

    ``role``: the verdict reads the primary metric (exactly one; when none says ``primary``,
    the first non-guardrail metric is it, see ``Experiment.primary_metric``) and the guardrails;
    ``direction``: which way is good; ``margin``: a guardrail's accepted relative harm
    (non-inferiority margin); ``cap``: winsorise a mean metric's unit totals.
    """

    name: Key
    kind: MetricKind
    outcome: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    role: MetricRole = "secondary"
    direction: Direction = "increase"
    # validate_default: a guardrail without a margin is reported at 'metrics[i].margin'.
    margin: float | None = Field(default=None, ge=0, validate_default=True)
    cap: Cap | None = None

    @field_validator("margin")
    @classmethod
    def _margin_fits_role(cls, v: float | None, info: ValidationInfo) -> float | None:
        role = info.data.get("role")
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        if role == "guardrail" and v is None:
            raise ValueError("a guardrail needs 'margin', the relative harm you accept, e.g. 0.01")
        if role is not None and role != "guardrail" and v is not None:
            raise ValueError(f"is for guardrails only (this metric's role is {role})")
        return v

    @field_validator("cap")
    @classmethod
    def _cap_on_means(cls, v: Cap | None, info: ValidationInfo) -> Cap | None:
        kind = info.data.get("kind")
        if v is not None and kind is not None and kind != "mean":
            raise ValueError(f"is for mean metrics only (this metric is a {kind})")
        return v

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Metric:
        if self.kind in ("proportion", "mean"):
            if not self.outcome:
                raise ValueError(f"a {self.kind} metric needs 'outcome' (the outcome name)")
            if self.numerator or self.denominator:
                raise ValueError(f"a {self.kind} metric takes 'outcome', not numerator/denominator")
        else:
            if not (self.numerator and self.denominator):
                raise ValueError("a ratio metric needs 'numerator' and 'denominator'")
            if self.outcome:
                raise ValueError("a ratio metric takes numerator/denominator, not 'outcome'")
        return self


class Experiment(_Strict):
    """An experiment on one surface. Defaults follow DESIGN.md ("Experiment file")."""

    key: Key
    surface: Key
    salt: str | None = None
    status: Status = "draft"
    control: str | None = None
    traffic: float = Field(default=1.0, ge=0.0, le=1.0)
    variants: list[Variant] = Field(min_length=2)
    fallback: str | None = None
    metrics: list[Metric] = Field(default_factory=list)
    description: str | None = None
    owner: str | None = None
    # Layers (docs/experiments.md): the layer this experiment lives in (None: the surface's own
    # layer) and the slice [start, end) of the layer's buckets it owns.
    layer: Key | None = None
    layer_range: tuple[Share, Share] = (0.0, 1.0)
    # Targeting: a condition on request attributes (experiments/targeting.py); None: everyone.
    targeting: str | None = None
    # QA allow-list: unit id -> variant key, served that variant with forced=true exposures.
    forced: dict[str, str] = Field(default_factory=dict)
    # Set by `stop --winner`: the surface serves this variant's model to everyone, no exposures.
    winner: str | None = None

    @field_validator("targeting")
    @classmethod
    def _targeting_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                compile_condition(v)
            except TargetingError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("layer_range")
    @classmethod
    def _range_is_a_slice(cls, v: tuple[float, float]) -> tuple[float, float]:
        try:
            slice_bounds(*v)
        except ValueError:
            raise ValueError(
                f"must be [start, end) with start < end, shares of the layer within [0, 1]; got {list(v)}"
            ) from None
        return v

    @field_validator("metrics")
    @classmethod
    def _one_primary(cls, v: list[Metric]) -> list[Metric]:
        primaries = [f"metrics[{i}] {m.name}" for i, m in enumerate(v) if m.role == "primary"]
        if len(primaries) > 1:
            raise ValueError(
                f"at most one metric may have role: primary; {len(primaries)} do ({', '.join(primaries)})"
            )
        return v

    @field_validator("forced")
    @classmethod
    def _forced_is_small(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > _MAX_FORCED:
            raise ValueError(f"holds {len(v)} units; at most {_MAX_FORCED} (it is a QA allow-list)")
        return v

    @model_validator(mode="after")
    def _defaults_and_references(self) -> Experiment:
        keys = [v.key for v in self.variants]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"variant keys must be unique; repeated: {', '.join(dupes)}")
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("variant weights must sum to a positive number")
        # Frozen model: fill derived defaults through object.__setattr__ once, at validation.
        if self.salt is None:
            object.__setattr__(self, "salt", self.key)
        if self.control is None:
            object.__setattr__(self, "control", keys[0])
        elif self.control not in keys:
            raise ValueError(
                f"control '{self.control}' is not a variant (variants: {', '.join(keys)})"
            )
        if self.fallback is None:
            object.__setattr__(self, "fallback", self.control)
        elif self.fallback not in keys:
            raise ValueError(
                f"fallback '{self.fallback}' is not a variant (variants: {', '.join(keys)})"
            )
        unknown = sorted({f"{u} -> {k}" for u, k in self.forced.items() if k not in keys})
        if unknown:
            raise ValueError(
                f"forced units name unknown variants: {', '.join(unknown)} (variants: {', '.join(keys)})"
            )
        if self.winner is not None:
            if self.winner not in keys:
                raise ValueError(
                    f"winner '{self.winner}' is not a variant (variants: {', '.join(keys)})"
                )
            if self.status != "stopped":
                raise ValueError(
                    f"a winner is only valid on a stopped experiment (status is {self.status})"
                )
        names = [m.name for m in self.metrics]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        return self

    @property
    def primary_metric(self) -> Metric | None:
        """The metric the verdict decides on: the one with ``role: primary``, else the first
        metric that is not a guardrail; None when there is none."""
        for m in self.metrics:
            if m.role == "primary":
                return m
        return next((m for m in self.metrics if m.role != "guardrail"), None)

    @property
    def variant_keys(self) -> tuple[str, ...]:
        """Variant keys in file order (which fixes bucket ranges)."""
        return tuple(v.key for v in self.variants)

    @property
    def weights(self) -> tuple[float, ...]:
        """Variant weights in file order."""
        return tuple(v.weight for v in self.variants)

    @property
    def bounds(self) -> tuple[int, ...]:
        """Exclusive upper bucket bound of each variant."""
        return bucket_bounds(self.weights)

    @property
    def expected_shares(self) -> dict[str, float]:
        """Share of units each variant should get, from the weights."""
        total = sum(self.weights)
        return {v.key: v.weight / total for v in self.variants}

    def variant(self, key: str) -> Variant:
        """The variant named ``key``; VariantNotFound if there is none."""
        for v in self.variants:
            if v.key == key:
                return v
        raise VariantNotFound(self.key, key, self.variant_keys)

    @property
    def layer_id(self) -> str:
        """The layer this experiment is in: its ``layer``, or ``surface:NAME`` (the surface's own)."""
        return self.layer if self.layer is not None else surface_layer_salt(self.surface)

    @property
    def layer_slice(self) -> tuple[int, int]:
        """The bucket range ``[lo, hi)`` of the layer this experiment owns."""
        return slice_bounds(*self.layer_range)

    @property
    def condition(self) -> Condition | None:
        """The compiled targeting condition, or None when every unit is eligible."""
        return compile_condition(self.targeting) if self.targeting is not None else None


class Surface(_Strict):
    """A place in a product that asks for results, with the model that serves it by default."""

    name: Key
    default_model: str
    max_limit: int = Field(default=200, ge=1, le=200)
    default_limit: int = Field(default=10, ge=1, le=200)
    # Share of units kept out of every experiment of the surface's own layer (docs/experiments.md).
    holdout: Share = 0.0
    description: str | None = None
    # Request attributes copied into exposure records, for segments (`abgate report --by`).
    # Nothing by default: logging an attribute is a decision about personal data.
    log_attributes: list[Key] = Field(default_factory=list, max_length=20)

    @field_validator("log_attributes")
    @classmethod
    def _attributes_unique(cls, v: list[str]) -> list[str]:
        repeated = sorted({a for a in v if v.count(a) > 1})
        if repeated:
            raise ValueError(f"names an attribute twice: {', '.join(repeated)}")
        return v

    @field_validator("default_model")
    @classmethod
    def _model_is_a_reference(cls, v: str) -> str:
        ModelRef.parse(v)
        return v

    @model_validator(mode="after")
    def _default_within_max(self) -> Surface:
        if self.default_limit > self.max_limit:
            raise ValueError(
                f"default_limit {self.default_limit} exceeds max_limit {self.max_limit}"
            )
        return self


class Layer(_Strict):
    """A named layer: experiments in it are mutually exclusive, even across surfaces.

    Units spread over the layer's buckets by ``bucket(f"layer:{salt}", unit_id)``; ``holdout``
    keeps a share of them out of every experiment of the layer (experiments/layers.py).
    """

    name: Key
    salt: str | None = None
    holdout: Share = 0.0
    description: str | None = None

    @model_validator(mode="after")
    def _salt_defaults_to_name(self) -> Layer:
        if self.salt is None:
            object.__setattr__(self, "salt", self.name)
        return self


class SurfacesFile(_Strict):
    """A file declaring surfaces and, optionally, layers."""

    surfaces: list[Surface] = Field(default_factory=list)
    layers: list[Layer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _declares_something(self) -> SurfacesFile:
        if not self.surfaces and not self.layers:
            raise ValueError("declares nothing: give a 'surfaces' list (and optionally 'layers')")
        for kind, names in (
            ("surface", [s.name for s in self.surfaces]),
            ("layer", [x.name for x in self.layers]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclass(frozen=True, slots=True)
class ConfigSet:
    """Every surface and experiment of a configuration, validated together."""

    surfaces: dict[str, Surface] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key or surface name -> file
    layers: dict[str, Layer] = field(default_factory=dict)

    def running_on(self, surface: str) -> list[Experiment]:
        """Experiments that currently take traffic on ``surface``."""
        return [
            e for e in self.experiments.values() if e.surface == surface and e.status == "running"
        ]

    def winner_on(self, surface: str) -> Experiment | None:
        """The stopped experiment whose winner now serves ``surface``, if any."""
        for e in self.experiments.values():
            if e.surface == surface and e.status == "stopped" and e.winner is not None:
                return e
        return None

    def layer_salt_and_holdout(self, experiment: Experiment) -> tuple[str, float]:
        """The hash salt and holdout share of the layer ``experiment`` is in."""
        if experiment.layer is None:
            s = self.surfaces.get(experiment.surface)
            return surface_layer_salt(experiment.surface), s.holdout if s else 0.0
        layer = self.layers.get(experiment.layer)
        if layer is None:
            return experiment.layer, 0.0
        return layer.salt or layer.name, layer.holdout
