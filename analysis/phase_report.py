"""The report's allocation phases: kept units per arm and the SRM check of each phase."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from analysis.aggregates import Aggregates
from analysis.looks import arms_only
from analysis.phases import Phase, phase_srm, plan_phases
from analysis.report import PhaseSummary
from analysis.sql import DEFAULT_OVERLAP, PhaseRecord
from experiments import Experiment


def _phase_objects(
    experiment: Experiment, records: Sequence[PhaseRecord], ids: Iterable[str], last: date
) -> list[Phase]:
    """``analysis.phases.Phase`` of every phase: the logged weights, or the experiment file's
    for records without a phase (``""``) or without logged weights."""
    file_weights = tuple((v.key, float(v.weight)) for v in experiment.variants)
    known = {r.id: r for r in records}
    far = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)
    out = []
    for pid in sorted(set(ids) | set(known)):
        r = known.get(pid)
        weights = (
            tuple((v, w) for v, w, _, _ in r.arms) if r is not None and r.arms else file_weights
        )
        start = r.start if r is not None else far
        end = r.end if r is not None else far
        out.append(Phase(pid, start, end, weights))
    return out


def phase_summaries(
    experiment: Experiment,
    records: Sequence[PhaseRecord],
    final: Mapping[str, Mapping[str, Aggregates]],
    excluded: Mapping[str, Mapping[str, int]],
    last: date,
) -> list[PhaseSummary]:
    """Every phase with its kept units per arm and its SRM check (Holm across phases)."""
    arms = arms_only(final)
    phases = _phase_objects(experiment, records, [k for k, a in arms.items() if a], last)
    plan = plan_phases(phases, overlap=DEFAULT_OVERLAP)
    units = {k: {v: a.count for v, a in arms.get(k, {}).items()} for k in (p.id for p in phases)}
    checks = {c.phase: c for c in phase_srm(plan, units)}
    return [
        PhaseSummary(
            p.phase.id,
            next((r.start for r in records if r.id == p.phase.id), None),
            next((r.end for r in records if r.id == p.phase.id), None),
            dict(p.phase.weights),
            {v: checks[p.phase.id].units.get(v, 0) for v in p.phase.variants}
            | dict(checks[p.phase.id].units),
            dict(excluded.get(p.phase.id, {})),
            dict(p.expected_share),
            checks[p.phase.id].p_value,
            checks[p.phase.id].p_value_adjusted,
        )
        for p in plan.phases
    ]
