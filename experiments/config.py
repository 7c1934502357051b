"""Experiment and surface configuration: the YAML schema of DESIGN.md, validated with located errors.

An experiment file holds one experiment (a mapping with ``key``); a surfaces file holds a
mapping with a ``surfaces`` list. Every problem is reported with the file, the line and the
field it concerns (``experiments/home.yaml:7: field 'variants[1].weight' must be >= 0``), and
all problems of a file are reported at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments.assignment import bucket_bounds
from experiments.errors import ConfigError, ConfigIssue
from experiments.modelref import ModelRef

Status = Literal["draft", "running", "paused", "stopped", "archived"]
MetricKind = Literal["proportion", "mean", "ratio"]

_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
Key = Annotated[str, Field(pattern=_KEY)]


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


class Metric(_Strict):
    """A metric computed by the report from outcome records (DESIGN.md, "Metrics and the report")."""

    name: Key
    kind: MetricKind
    outcome: str | None = None
    numerator: str | None = None
    denominator: str | None = None

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
            raise ValueError(f"control '{self.control}' is not a variant (variants: {', '.join(keys)})")
        if self.fallback is None:
            object.__setattr__(self, "fallback", self.control)
        elif self.fallback not in keys:
            raise ValueError(f"fallback '{self.fallback}' is not a variant (variants: {', '.join(keys)})")
        names = [m.name for m in self.metrics]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        return self

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
        """The variant named ``key``; KeyError if there is none."""
        for v in self.variants:
            if v.key == key:
                return v
        raise KeyError(key)


class Surface(_Strict):
    """A place in a product that asks for results, with the model that serves it by default."""

    name: Key
    default_model: str
    max_limit: int = Field(default=200, ge=1, le=200)
    default_limit: int = Field(default=10, ge=1, le=200)

    @field_validator("default_model")
    @classmethod
    def _model_is_a_reference(cls, v: str) -> str:
        ModelRef.parse(v)
        return v

    @model_validator(mode="after")
    def _default_within_max(self) -> Surface:
        if self.default_limit > self.max_limit:
            raise ValueError(f"default_limit {self.default_limit} exceeds max_limit {self.max_limit}")
        return self


class SurfacesFile(_Strict):
    """A file declaring surfaces."""

    surfaces: list[Surface] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ConfigSet:
    """Every surface and experiment of a configuration, validated together."""

    surfaces: dict[str, Surface] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key or surface name -> file

    def running_on(self, surface: str) -> list[Experiment]:
        """Experiments that currently take traffic on ``surface``."""
        return [e for e in self.experiments.values() if e.surface == surface and e.status == "running"]


# --- YAML with line numbers -------------------------------------------------------------------


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Record the 1-based line of every mapping key and sequence item below ``node``."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            out[(*path, key)] = k.start_mark.line + 1
            _line_index(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_index(item, (*path, i), out)


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(file, "", f"is not valid YAML: {problem}", line)]) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    return data, lines


def _field_name(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issues_from(exc: ValidationError, file: str, lines: Mapping[tuple[Any, ...], int]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        # pydantic adds the validator's mode to locations of model validators; drop non-path parts.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or not str(p).startswith("function-"))
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif err["type"] == "missing":
            msg = "is required"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif err["type"] == "string_pattern_mismatch":
            msg = "must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        issues.append(ConfigIssue(file, _field_name(loc), msg, line))
    return issues


_SURFACES_FILE = re.compile(r"^\s*surfaces\s*:", re.MULTILINE)


def parse_experiment(text: str, file: str = "<string>") -> Experiment:
    """Validate one experiment document; raise ConfigError naming file, line and field."""
    data, lines = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, "", "must be a mapping with at least 'key', 'surface', 'variants'", 1)])
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, file, lines)) from None


def parse_surfaces(text: str, file: str = "<string>") -> list[Surface]:
    """Validate a surfaces document; raise ConfigError naming file, line and field."""
    data, lines = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, "", "must be a mapping with a 'surfaces' list", 1)])
    try:
        return SurfacesFile.model_validate(data).surfaces
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, file, lines)) from None


def load_experiment_file(path: str | Path) -> Experiment:
    """Read and validate one experiment file."""
    p = Path(path)
    return parse_experiment(_read(p), str(p))


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(p), "", f"cannot be read: {exc}")]) from exc


def load_config_dir(directory: str | Path) -> ConfigSet:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` and check them together.

    A file whose top level has ``surfaces:`` declares surfaces; any other file is one experiment.
    Cross-file checks: unique experiment keys and surface names, every experiment on a declared
    surface, at most one running experiment per surface. Every problem of every file is reported.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(root), "", "is not a directory of experiment files")])
    issues: list[ConfigIssue] = []
    surfaces: dict[str, Surface] = {}
    experiments: dict[str, Experiment] = {}
    sources: dict[str, str] = {}
    for p in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        text = _read(p)
        try:
            if _SURFACES_FILE.search(text):
                for s in parse_surfaces(text, str(p)):
                    if s.name in surfaces:
                        issues.append(ConfigIssue(str(p), "surfaces", f"surface '{s.name}' is also declared in {sources['surface:' + s.name]}"))
                    surfaces[s.name] = s
                    sources["surface:" + s.name] = str(p)
            else:
                e = parse_experiment(text, str(p))
                if e.key in experiments:
                    issues.append(ConfigIssue(str(p), "key", f"experiment '{e.key}' is also defined in {sources[e.key]}"))
                experiments[e.key] = e
                sources[e.key] = str(p)
        except ConfigError as exc:
            issues.extend(exc.issues)
    issues.extend(check_references(surfaces, experiments, sources))
    if issues:
        raise ConfigError(issues)
    return ConfigSet(surfaces, experiments, sources)


def check_references(
    surfaces: Mapping[str, Surface], experiments: Mapping[str, Experiment], sources: Mapping[str, str]
) -> list[ConfigIssue]:
    """Cross-object checks: experiments sit on declared surfaces, one running per surface."""
    issues: list[ConfigIssue] = []
    running: dict[str, str] = {}
    for e in experiments.values():
        file = sources.get(e.key, "<config>")
        if e.surface not in surfaces:
            known = ", ".join(sorted(surfaces)) or "none declared"
            issues.append(ConfigIssue(file, "surface", f"unknown surface '{e.surface}' (surfaces: {known})"))
        if e.status == "running":
            if e.surface in running:
                issues.append(
                    ConfigIssue(file, "status", f"surface '{e.surface}' already runs experiment '{running[e.surface]}'; "
                                "only one running experiment per surface (layers come with the experiment store)")
                )
            running[e.surface] = e.key
    return issues
