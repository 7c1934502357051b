"""The report: typed records, and their JSON form (DESIGN.md, "Metrics and the report").

``Report.to_dict()`` gives exactly the DESIGN.md shape; keys beyond it appear only when the
option that produces them is on (``p_value_sequential`` with ``--sequential``, ``mde`` and
``days_to_target`` with ``--power``, ``cuped`` and ``cuped_variance_reduction`` with
``--cuped``), besides the ``verdict`` and each metric's ``role`` and ``direction`` (and
``margin``, ``cap`` when set), which every report has. Undefined numbers are ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Interval = tuple[float, float]


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else x


def _ci(ci: Interval) -> list[float | None]:
    return [_num(ci[0]), _num(ci[1])]


@dataclass(frozen=True, slots=True)
class Power:
    """Sensitivity of one comparison: the relative MDE now and the days to reach a target MDE."""

    mde: float  # relative minimal detectable effect at the current sample (fraction of control)
    target_mde: float | None
    days_to_target: float | None  # further days at the observed enrolment rate; 0 if reached


@dataclass(frozen=True, slots=True)
class Comparison:
    """One non-control variant against control on one metric."""

    variant: str
    diff: float
    diff_ci: Interval
    lift: float
    lift_ci: Interval
    p_value: float
    p_value_adjusted: float
    p_value_sequential: float | None = None
    power: Power | None = None

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN.md comparison object, plus optional keys for enabled options."""
        out: dict[str, Any] = {
            "variant": self.variant,
            "diff": _num(self.diff),
            "diff_ci": _ci(self.diff_ci),
            "lift": _num(self.lift),
            "lift_ci": _ci(self.lift_ci),
            "p_value": _num(self.p_value),
            "p_value_adjusted": _num(self.p_value_adjusted),
        }
        if self.p_value_sequential is not None:
            out["p_value_sequential"] = _num(self.p_value_sequential)
        if self.power is not None:
            out["mde"] = _num(self.power.mde)
            if self.power.target_mde is not None:
                out["target_mde"] = self.power.target_mde
                out["days_to_target"] = _num(self.power.days_to_target)
        return out


@dataclass(frozen=True, slots=True)
class MetricResult:
    """A metric's value per variant and its comparisons against control."""

    name: str
    kind: str
    values: dict[str, float]
    comparisons: list[Comparison]
    cuped: bool = False
    role: str = "secondary"  # primary | secondary | guardrail (the experiment file's)
    direction: str = "increase"  # which way is good
    margin: float | None = None  # guardrails: accepted relative harm
    cap: float | None = None  # mean metrics: winsorising percentile
    cuped_variance_reduction: float | None = None  # with CUPED: share of unit variance removed
    stratified: bool = False  # estimates stratified by enrolment phase (analysis/phases.py)
    phases_dropped: tuple[str, ...] = ()  # phases left out (an arm with fewer than 2 units)

    def describe(self) -> str:
        """Kind, role, which way is good, margin, cap and CUPED, in words (table titles)."""
        good = "higher is better" if self.direction == "increase" else "lower is better"
        parts = [self.kind, self.role, good]
        if self.margin is not None:
            parts.append(f"margin {self.margin:.2%}")
        if self.cap is not None:
            parts.append(f"capped at P{self.cap:g}")
        if self.cuped:
            vr = self.cuped_variance_reduction
            known = vr is not None and not math.isnan(vr)
            parts.append("CUPED" + (f", variance reduced {vr:.1%}" if known else ""))
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN.md metric object, with the metric's role and direction (and margin, cap)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "direction": self.direction,
            "values": {k: _num(v) for k, v in self.values.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
        }
        if self.margin is not None:
            out["margin"] = self.margin
        if self.cap is not None:
            out["cap"] = {"percentile": self.cap}
        if self.cuped:
            out["cuped"] = True
            if self.cuped_variance_reduction is not None:
                out["cuped_variance_reduction"] = _num(self.cuped_variance_reduction)
        out["stratified"] = self.stratified
        if self.phases_dropped:
            out["phases_dropped"] = list(self.phases_dropped)
        return out


@dataclass(frozen=True, slots=True)
class VariantSummary:
    """Units (by first exposure) and exposures of one variant."""

    units: int
    exposures: int


@dataclass(frozen=True, slots=True)
class LookEstimate:
    """One comparison as the report saw it at one look (the end of one UTC day)."""

    diff: float
    var_diff: float  # V = Var(diff) = se², the variance the mSPRT uses
    p_value: float  # the fixed-horizon p of this look's data
    p_value_sequential: float | None = None  # running always-valid p up to this look


@dataclass(frozen=True, slots=True)
class DailyPoint:
    """One look: the experiment as of the end of one UTC day (docs/analysts.md, "Looks").

    Every UTC day on which anything was logged is a look; the last one is the whole window.
    """

    day: date
    new_units: dict[str, int]  # units whose first exposure fell on this day
    # metric name -> variant -> (lift, lift_ci) over the units enrolled by the end of this day,
    # with their outcomes by then (CUPED-adjusted when the metric is)
    lifts: dict[str, dict[str, tuple[float, Interval]]]
    # metric name -> variant -> the look's comparison (diff, its variance, p-values)
    estimates: dict[str, dict[str, LookEstimate]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PhaseSummary:
    """One allocation phase: its span, weights, units per arm and sample-ratio check."""

    id: str  # "" for records written before phases existed
    start: datetime | None
    end: datetime | None
    weights: dict[str, float]
    units: dict[str, int]  # kept units enrolled in this phase, per arm
    excluded: dict[str, int]  # units excluded by bucket (their arm changed in a later phase)
    expected_share: dict[str, float]  # of the kept buckets
    srm_p_value: float
    srm_p_value_adjusted: float  # Holm across phases

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``phases`` of the report)."""
        return {
            "id": self.id,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "weights": dict(self.weights),
            "units": dict(self.units),
            "excluded": dict(self.excluded),
            "expected_share": {k: _num(v) for k, v in self.expected_share.items()},
            "srm_p_value": _num(self.srm_p_value),
            "srm_p_value_adjusted": _num(self.srm_p_value_adjusted),
        }


@dataclass(frozen=True, slots=True)
class HoldoutComparison:
    """One arm against the holdout (the units kept out of the experiment, served the default).

    ``p_value_adjusted`` is Holm's across the holdout family (every arm × every metric); the
    intervals are not adjusted (each is a plain 1 − alpha interval).
    """

    metric: str
    variant: str
    value_holdout: float
    value_variant: float
    diff: float
    diff_ci: Interval
    lift: float
    lift_ci: Interval
    p_value: float
    p_value_adjusted: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "metric": self.metric,
            "variant": self.variant,
            "value_holdout": _num(self.value_holdout),
            "value_variant": _num(self.value_variant),
            "diff": _num(self.diff),
            "diff_ci": _ci(self.diff_ci),
            "lift": _num(self.lift),
            "lift_ci": _ci(self.lift_ci),
            "p_value": _num(self.p_value),
            "p_value_adjusted": _num(self.p_value_adjusted),
        }


@dataclass(frozen=True, slots=True)
class Holdout:
    """The experiment's population against its holdout (docs/analysts.md, "Holdouts").

    The intervals are unadjusted.
    """

    units: int
    comparisons: list[HoldoutComparison]

    @property
    def family(self) -> int:
        """How many comparisons Holm's adjustment counted: every arm × every metric with a
        p-value (``analysis.stats.holm`` leaves NaN out)."""
        return sum(1 for c in self.comparisons if not math.isnan(c.p_value))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``holdout`` of the report)."""
        return {
            "units": self.units,
            "adjustment": {"p_value": "holm", "family": self.family, "intervals": "unadjusted"},
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


@dataclass(frozen=True, slots=True)
class Segment:
    """The report's figures among the units of one value of the ``--by`` attribute."""

    value: str
    units: dict[str, int]
    srm_p_value: float
    # metric -> comparisons, p_value_adjusted being Holm across segments (per metric and arm)
    metrics: dict[str, list[Comparison]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (one entry of ``segments.groups``)."""
        return {
            "units": dict(self.units),
            "srm_p_value": _num(self.srm_p_value),
            "metrics": {k: [c.to_dict() for c in v] for k, v in self.metrics.items()},
        }


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """Where a skipped line is: its file and 1-based line number, and what is wrong with it."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """What the report read and left out (docs/analysts.md, "Malformed lines").

    ``read``: exposure/outcome records and unusable lines read; ``torn``: lines that are not a
    log entry (not JSON, not an object); ``incomplete``: exposure/outcome records missing a
    required field or with a ``ts`` that is no time. ``files`` (file -> lines skipped) and
    ``first`` (the first few, in file and line order) exist for a local archive only.
    """

    read: int = 0
    torn: int = 0
    incomplete: int = 0
    files: dict[str, int] = field(default_factory=dict)
    first: list[SkippedLine] = field(default_factory=list)

    @property
    def lines(self) -> int:
        """Lines (records) left out of the figures."""
        return self.torn + self.incomplete

    @property
    def share(self) -> float:
        """Skipped lines as a share of those read (0 when nothing was read)."""
        return self.lines / self.read if self.read else 0.0

    def describe(self) -> str:
        """One sentence for the table and the HTML: how many, which kinds, the first place."""
        kinds = ", ".join(
            f"{n:,} {what}"
            for n, what in ((self.torn, "torn"), (self.incomplete, "incomplete"))
            if n
        )
        where = f"; first: {self.first[0]}" if self.first else ""
        files = f" in {len(self.files)} file{'s' * (len(self.files) != 1)}" if self.files else ""
        return (
            f"{self.lines:,} of {self.read:,} lines ({self.share:.2%}) skipped as malformed "
            f"({kinds}){files}{where}"
        )

    def warning(self) -> str:
        """The warning shown next to the verdict (table and HTML) when lines were skipped."""
        more = f" (+{len(self.files) - 1} more files)" if len(self.files) > 1 else ""
        return (
            f"{self.describe()}{more}; they are left out of every figure (--strict fails instead)."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``skipped`` of the report)."""
        return {
            "lines": self.lines,
            "torn": self.torn,
            "incomplete": self.incomplete,
            "read": self.read,
            "share": self.share,
            "files": dict(self.files),
            "first": [{"file": x.file, "line": x.line, "reason": x.reason} for x in self.first],
        }


Decision = Literal["ship", "do_not_ship", "keep_running", "invalid"]
GuardrailStatus = Literal["ok", "breached", "inconclusive"]


@dataclass(frozen=True, slots=True)
class VariantVerdict:
    """The decision for one non-control variant against control."""

    variant: str
    decision: Decision
    reason: str  # one sentence, naming the metric and its figures
    primary: str | None  # primary metric name
    primary_comparison: Comparison | None
    guardrails: dict[str, GuardrailStatus]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``verdict.variants[VARIANT]`` of the report)."""
        return {
            "decision": self.decision,
            "reason": self.reason,
            "primary": self.primary,
            "guardrails": dict(self.guardrails),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The experiment's decision, its reason, and each variant's verdict."""

    decision: Decision
    reason: str
    variants: dict[str, VariantVerdict]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the report's ``verdict`` key)."""
        return {
            "decision": self.decision,
            "reason": self.reason,
            "variants": {k: v.to_dict() for k, v in self.variants.items()},
        }


@dataclass(frozen=True, slots=True)
class Report:
    """An experiment report, as built by ``build_report``."""

    experiment: str
    control: str
    alpha: float
    variants: dict[str, VariantSummary]
    srm_p_value: float
    expected_share: dict[str, float]
    metrics: list[MetricResult]
    daily: list[DailyPoint] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    source: str = ""
    verdict: Verdict | None = None  # set by build (analysis.verdict.decide)
    generated_at: datetime | None = None
    config_version: int | None = None  # the experiment's version in the store, when known
    phases: list[PhaseSummary] = field(default_factory=list)
    holdout: Holdout | None = None
    segment_by: str | None = None  # the ``--by`` attribute
    segments: list[Segment] = field(default_factory=list)
    skipped: Skipped | None = None  # what the scan left out (None: looks given, not read)
    warnings: list[str] = field(default_factory=list)  # what the source could not read

    @property
    def srm_alarm(self) -> bool:
        """True when the sample ratio mismatch test rejects at p < 0.001."""
        return any(p < 0.001 for p in self.srm_p_values if not math.isnan(p))

    @property
    def srm_p_values(self) -> tuple[float, ...]:
        """Every SRM p-value the verdict must check: each phase's, Holm-adjusted across phases
        (the report's own p when it has no phase list)."""
        if self.phases:
            return tuple(p.srm_p_value_adjusted for p in self.phases)
        return (self.srm_p_value,)

    def to_dict(self) -> dict[str, Any]:
        """The report as DESIGN.md's JSON object."""
        return {
            "experiment": self.experiment,
            "control": self.control,
            "alpha": self.alpha,
            "variants": {
                k: {"units": v.units, "exposures": v.exposures} for k, v in self.variants.items()
            },
            "srm": {"p_value": _num(self.srm_p_value), "expected_share": dict(self.expected_share)},
            "metrics": [m.to_dict() for m in self.metrics],
            **({"verdict": self.verdict.to_dict()} if self.verdict is not None else {}),
            "phases": [p.to_dict() for p in self.phases],
            **({"holdout": self.holdout.to_dict()} if self.holdout is not None else {}),
            **(
                {
                    "segments": {
                        "by": self.segment_by,
                        "exploratory": True,
                        "groups": {s.value: s.to_dict() for s in self.segments},
                    }
                }
                if self.segment_by is not None
                else {}
            ),
            **({"skipped": self.skipped.to_dict()} if self.skipped is not None else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }
