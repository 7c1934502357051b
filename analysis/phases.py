"""Allocation phases: which units to keep, SRM per phase, and estimates stratified by phase.

A phase is an allocation (weights, traffic, targeting, layer share, variants, served models):
every exposure carries the id of the phase it was served under, the phase's weights and the
unit's variant bucket (docs/design.md, "Log records"). A unit belongs to the phase of its first
exposure. The same allocation again gives the same id again, so a phase is an allocation, not
a period: its ``start``/``end`` are the first/last exposure carrying its id.

Three things follow, all pure functions of plain values (the SQL engine does the counting):

1. ``plan_phases``: which buckets to keep. A weight ramp moves some buckets to another variant
   by design; units of those buckets are served two arms. They are excluded *by bucket* (never
   by behaviour: keeping the units that came back and switched would bias toward engaged users).
   The kept bucket ranges per (enrolment phase, variant) are small, so the SQL filters units with
   a VALUES table of ``PhasePlan.kept_rows()``.
2. ``phase_srm``: the sample-ratio check of each phase against the expected shares of its kept
   bucket ranges, Holm-adjusted across phases (a ramp is no SRM; a broken phase still is).
3. ``stratified_compare``: treatment against control, stratified by enrolment phase, so that a
   ramp cannot bias the estimate (Simpson's paradox: early and late enrollers differ, and each
   arm mixes them in different proportions when weights change).

References:
    Miratrix, Sekhon, Yu (2013). Adjusting treatment effect estimates by post-stratification
    in randomized experiments. JRSS-B 75(2).
    Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD.
    Kohavi, Tang, Xu (2020). Trustworthy Online Controlled Experiments, ch. 21 (SRM, ramps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from analysis import stats
from analysis.aggregates import Aggregates
from analysis.metrics import CupedFit, MetricColumns, compare, cuped_fit, metric_value, moments
from experiments import BUCKETS, bucket_bounds, variant_index

Range = tuple[int, int]  # [lo, hi) of buckets


@dataclass(frozen=True, slots=True)
class Phase:
    """One allocation: its id, first and last exposure time, and weights in bucket order.

    Variant i owns buckets ``[bounds[i-1], bounds[i])`` (``bounds[-1]`` = 0), DESIGN.md's
    contiguous ranges ``[floor(10000·W(i-1)/W), floor(10000·W(i)/W))``.
    """

    id: str
    start: datetime
    end: datetime
    weights: tuple[tuple[str, float], ...]
    bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [v for v, _ in self.weights]
        if len(keys) < 1 or len(set(keys)) != len(keys):
            raise ValueError(f"phase {self.id}: weights need distinct variants, got {keys}")
        if self.end < self.start:
            raise ValueError(f"phase {self.id}: end {self.end} is before start {self.start}")
        try:
            bounds = bucket_bounds([w for _, w in self.weights])
        except ValueError as exc:
            raise ValueError(f"phase {self.id}: {exc}") from None
        object.__setattr__(self, "bounds", bounds)

    @property
    def variants(self) -> tuple[str, ...]:
        """Variant keys in bucket order."""
        return tuple(v for v, _ in self.weights)

    def variant_of(self, bucket: int) -> str:
        """The variant whose bucket range holds ``bucket`` in this phase."""
        if not 0 <= bucket < BUCKETS:
            raise ValueError(f"bucket must be in [0, {BUCKETS}), got {bucket}")
        return self.variants[variant_index(self.bounds, bucket)]


@dataclass(frozen=True, slots=True)
class PhaseKeep:
    """What is kept of the units enrolled in one phase.

    ``kept``: per variant of the phase (bucket order), sorted disjoint ``[lo, hi)`` ranges of
    the buckets that map to that variant in this phase and in every phase of ``against``.
    ``expected_share``: each variant's kept buckets over all kept buckets (the SRM's shares).
    """

    phase: Phase
    kept: Mapping[str, tuple[Range, ...]]
    expected_share: Mapping[str, float]
    excluded_buckets: int
    against: tuple[str, ...]  # ids of the other phases that constrained the kept buckets


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """The kept buckets of every phase, phases in order of start."""

    phases: tuple[PhaseKeep, ...]

    def __getitem__(self, phase_id: str) -> PhaseKeep:
        for p in self.phases:
            if p.phase.id == phase_id:
                return p
        raise KeyError(phase_id)

    def kept_rows(self) -> tuple[tuple[str, str, int, int], ...]:
        """``(phase, variant, lo, hi)`` rows: a unit is kept iff its bucket is in one of its
        (enrolment phase, variant)'s ``[lo, hi)``, for a VALUES table in the SQL."""
        return tuple(
            (p.phase.id, v, lo, hi)
            for p in self.phases
            for v, rs in p.kept.items()
            for lo, hi in rs
        )


def _kept_ranges(phase: Phase, others: Sequence[Phase]) -> dict[str, tuple[Range, ...]]:
    # Between consecutive bounds of all phases involved, every phase maps all buckets to one
    # variant: checking each elementary range's first bucket checks the whole range.
    cuts = sorted({0, BUCKETS, *phase.bounds, *(b for o in others for b in o.bounds)})
    kept: dict[str, list[Range]] = {v: [] for v in phase.variants}
    for lo, hi in pairwise(cuts):
        v = phase.variant_of(lo)
        if all(o.variant_of(lo) == v for o in others):
            ranges = kept[v]
            if ranges and ranges[-1][1] == lo:
                ranges[-1] = (ranges[-1][0], hi)
            else:
                ranges.append((lo, hi))
    return {v: tuple(rs) for v, rs in kept.items()}


def plan_phases(phases: Iterable[Phase], *, overlap: timedelta = timedelta(0)) -> PhasePlan:
    """Kept bucket ranges, expected shares and excluded buckets of each phase.

    For units enrolled in phase k, variant v keeps the buckets that map to v in phase k and in
    every other phase j the unit may be served under after enrolling: j started after k
    (``j.start > k.start``), or an earlier j was still served more than ``overlap`` after k
    started (``j.end > k.start + overlap``). A recurring allocation (90/10 → 50/50 → 90/10) is
    one phase whose start and end span the other, so both constrain each other. A change of
    traffic or targeting alone (same weights, new id) excludes nothing.

    ``overlap`` tolerates replicas that still serve the old phase for a moment after the new one
    started (config polling): an earlier phase seen only that long into k is that lag, not a
    return to the old allocation. Phases that started after k always count, however short.

    Expected share of v in phase k = |kept(k, v)| / Σ_u |kept(k, u)| (buckets are uniform, so
    the kept units split in proportion to the kept bucket counts).

    References:
        Kohavi, Tang, Xu (2020). Trustworthy Online Controlled Experiments, ch. 21 (ramps).
    """
    ordered = sorted(phases, key=lambda p: (p.start, p.id))
    ids = [p.id for p in ordered]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"phase ids must be distinct (one phase per allocation), repeated: {dup}")
    out = []
    for k in ordered:
        others = [
            j for j in ordered if j.id != k.id and (j.start > k.start or j.end > k.start + overlap)
        ]
        kept = _kept_ranges(k, others)
        sizes = {v: sum(hi - lo for lo, hi in rs) for v, rs in kept.items()}
        total = sum(sizes.values())
        share = {v: (s / total if total else 0.0) for v, s in sizes.items()}
        out.append(PhaseKeep(k, kept, share, BUCKETS - total, tuple(j.id for j in others)))
    return PhasePlan(tuple(out))


@dataclass(frozen=True, slots=True)
class PhaseSrm:
    """One phase's sample-ratio check: units per variant, expected shares, raw and Holm p.

    ``p_value`` is NaN (and not counted by Holm) for a phase without units.
    """

    phase: str
    units: Mapping[str, int]
    expected_share: Mapping[str, float]
    p_value: float
    p_value_adjusted: float


def phase_srm(plan: PhasePlan, units: Mapping[str, Mapping[str, int]]) -> list[PhaseSrm]:
    """SRM of each phase of ``plan`` (in its order) from the kept units per (phase, variant).

    χ² goodness of fit of the phase's units per variant against its kept expected shares
    (``stats.srm_p_value``), then Holm's adjustment across the phases that have units
    (``stats.holm``). Units of a variant outside the phase's weights (an unknown arm) give
    p = 0, as the single-phase check does.

    References:
        Fabijan et al. (2019). Diagnosing Sample Ratio Mismatch in Online Controlled
        Experiments. KDD.
        Kohavi, Tang, Xu (2020). Trustworthy Online Controlled Experiments, ch. 21.
    """
    known = {p.phase.id for p in plan.phases}
    unknown = sorted(set(units) - known)
    if unknown:
        raise ValueError(f"units for phases not in the plan: {unknown}")
    rows = []
    for p in plan.phases:
        counts = dict(units.get(p.phase.id, {}))
        for v in p.phase.variants:
            counts.setdefault(v, 0)
        tested = sum(counts.values()) > 0
        raw = stats.srm_p_value(counts, p.expected_share) if tested else math.nan
        rows.append((p, counts, raw))
    adjusted = stats.holm([raw for _, _, raw in rows])
    return [
        PhaseSrm(p.phase.id, counts, p.expected_share, raw, adj)
        for (p, counts, raw), adj in zip(rows, adjusted, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class StratifiedEstimate:
    """``stats.Estimate``'s fields, the arm values, and which phases were used.

    ``stratified`` is False when one phase was used: the figures are then the single-phase
    ones (Welch for proportion/mean, delta method for ratio). ``weights`` holds w_k per phase
    used. ``value_control``/``value_variant`` are Σ_k w_k·m_{v,k} of the unadjusted metric
    values (the plain metric value with one phase).
    """

    diff: float
    diff_ci: stats.Interval
    lift: float
    lift_ci: stats.Interval
    p_value: float
    diff_se: float
    value_control: float
    value_variant: float
    stratified: bool
    phases_used: tuple[str, ...]
    phases_dropped: tuple[str, ...]
    weights: Mapping[str, float]

    @property
    def estimate(self) -> stats.Estimate:
        """The comparison as a plain ``stats.Estimate``."""
        return stats.Estimate(
            self.diff, self.diff_ci, self.lift, self.lift_ci, self.p_value, self.diff_se
        )


def stratified_compare(
    cols: MetricColumns,
    by_phase: Mapping[str, Mapping[str, Aggregates]],
    control: str,
    variant: str,
    alpha: float = 0.05,
    *,
    cuped: bool = False,
) -> StratifiedEstimate:
    """``variant`` against ``control``, stratified by enrolment phase (post-stratification).

    For phases k where both arms have at least 2 units: m_{v,k} the arm's value among units
    enrolled in k (a mean of per-unit values, or Σnum/Σden for a ratio), V_{v,k} the variance
    of that value (s²_{v,k}/n_{v,k}, or the delta-method Var(R) of ``Aggregates.ratio_var``),
    N_k the units of k in the two arms, w_k = N_k/N with N = Σ_k N_k. Then
    M_v = Σ_k w_k·m_{v,k}, Var(M_v) = Σ_k w_k²·V_{v,k}; diff = M_t − M_c with
    se = sqrt(Var(M_t) + Var(M_c)), CI diff ± z_{1−α/2}·se and p = 2·(1 − Φ(|diff|/se));
    lift = diff/M_c with Var = Var(M_t)/M_c² + M_t²·Var(M_c)/M_c⁴ (``stats.normal_comparison``).
    A phase where an arm has fewer than 2 units is left out and named in ``phases_dropped``.

    With one phase used (or only one phase with units) this is exactly the single-phase
    comparison (``metrics.compare``: Welch's t for proportion/mean, the delta method for ratio).

    CUPED (``cuped=True``, proportion/mean with a covariate): θ is pooled within every
    (phase, variant) group of ``by_phase`` (``metrics.cuped_fit``), each phase's arm value is
    m_Y − θ·(m_X − overall m_X) with the adjusted variance; a fixed θ and a pre-exposure X
    keep every phase's difference unbiased. With one phase this is today's CUPED.

    References:
        Miratrix, Sekhon, Yu (2013). Adjusting treatment effect estimates by
        post-stratification in randomized experiments. JRSS-B 75(2).
        Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD.
        Deng, Xu, Kohavi, Walker (2013). Improving the Sensitivity of Online Controlled
        Experiments by Utilizing Pre-Experiment Data. WSDM.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if control == variant:
        raise ValueError(f"cannot compare variant {variant} with itself")
    empty = Aggregates()
    fit: CupedFit | None = None
    if cuped and cols.x:
        fit = cuped_fit(cols, [a for arms in by_phase.values() for a in arms.values()])
    arms = {k: (a.get(control, empty), a.get(variant, empty)) for k, a in by_phase.items()}
    present = [k for k, (c, t) in arms.items() if c.count + t.count > 0]
    used = tuple(k for k in present if min(arms[k][0].count, arms[k][1].count) >= 2)
    dropped = tuple(k for k in present if k not in used)

    if len(present) <= 1 or len(used) == 1:
        key = used[0] if used else (present[0] if present else None)
        c, t = arms[key] if key is not None else (empty, empty)
        e = compare(cols, moments(cols, t, fit), moments(cols, c, fit), alpha)
        values = (metric_value(cols, c), metric_value(cols, t))
        return _result(e, values, False, used, dropped, {k: 1.0 for k in used})
    if not used:
        nan, ni = math.nan, stats.NAN_INTERVAL
        return _result(
            stats.Estimate(nan, ni, nan, ni, nan, nan), (nan, nan), True, (), dropped, {}
        )

    total = sum(arms[k][0].count + arms[k][1].count for k in used)
    w = {k: (arms[k][0].count + arms[k][1].count) / total for k in used}

    def combined(i: int) -> tuple[float, float, float]:
        ms = [(w[k], moments(cols, arms[k][i], fit), arms[k][i]) for k in used]
        value = sum(wk * m.value for wk, m, _ in ms)
        var = sum(wk * wk * m.var_value for wk, m, _ in ms)
        raw = sum(wk * metric_value(cols, a) for wk, _, a in ms)
        return value, var, raw

    m_c, v_c, raw_c = combined(0)
    m_t, v_t, raw_t = combined(1)
    e = stats.normal_comparison(m_t, v_t, m_c, v_c, alpha)
    return _result(e, (raw_c, raw_t), True, used, dropped, w)


def _result(
    e: stats.Estimate,
    values: tuple[float, float],
    stratified: bool,
    used: tuple[str, ...],
    dropped: tuple[str, ...],
    weights: Mapping[str, float],
) -> StratifiedEstimate:
    return StratifiedEstimate(
        e.diff, e.diff_ci, e.lift, e.lift_ci, e.p_value, e.diff_se,
        values[0], values[1], stratified, used, dropped, weights,
    )  # fmt: skip
