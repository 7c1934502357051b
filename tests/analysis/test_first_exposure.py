"""A unit's first exposure is chosen by a total order, so the report cannot flip between runs.

Timestamps have microseconds, and two exposures of one unit can share one (two replicas, a
retried request, a config change between phases). The rule (docs/design.md, "Metrics and the
report"): the copy kept of an event logged twice is the smallest by (ts, unit_id, variant,
phase, bucket, attribute) for an exposure and (ts, unit_id, name, value) for an outcome, NULLs
last; a unit's first exposure is its smallest (ts, event_id); a phase's weights are those of
its first exposure with weights, by (ts, event_id). The tests build an archive full of such
ties, compute the choices in plain Python, and check that the report makes exactly those,
whatever the order of the lines, their split into files and DuckDB's thread count.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis.archive import ArchiveSource
from analysis.source import Cohort
from tests.analysis.analysis_testkit import T0, ArchiveWriter, experiment, iso

YAML = """
key: home-recs-demo
surface: home_top
status: running
variants:
  - {key: control,   weight: 50, model: "models:/home_recs@champion"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
metrics:
  - {name: revenue, kind: mean, outcome: purchase}
  - {name: purchases_per_exposure, kind: ratio, numerator: purchase, denominator: exposures}
"""
# Two phases with the same bucket ranges (a traffic change): nobody is excluded, so every
# unit's (variant, phase, segment) shows in the figures. 1/1 and 50/50 also give the same
# ranges: one phase id logged with either (an edit of the weights' scale) ties on weights.
HALF = [("control", 50.0), ("treatment", 50.0)]
ONE = [("control", 1.0), ("treatment", 1.0)]
PHASES = ("p-one", "p-two")
Cell = tuple[str, str, str | None]  # (variant, phase, segment)


def _last(v: Any) -> tuple[bool, Any]:
    """A sort key part with NULL last, as DuckDB orders a NULL inside a tuple."""
    return (v is None, v)


@dataclass(frozen=True, slots=True)
class Tied:
    """An archive's payloads (as written, duplicates included) and the choices of the rule."""

    payloads: list[dict[str, Any]]
    cells: dict[Cell, tuple[int, int, int]]  # -> (units, Σ revenue, Σ exposures)
    weights: dict[str, tuple[float, ...]]  # phase -> its arms' weights, in bucket order


def tied_payloads(units: int = 300, seed: int = 11) -> list[dict[str, Any]]:
    """Exposures of each unit tied at one microsecond across variants, phases and segments,
    some logged twice with other content; purchases whose values identify the unit."""
    rng = random.Random(seed)
    w = ArchiveWriter(Path("unused"))  # for its payloads only: nothing is written

    def eid() -> str:
        return f"{rng.getrandbits(64):016x}"

    def other_arm(p: dict[str, Any]) -> dict[str, Any]:
        flip = p["variant"] == "control"
        arm = {
            "variant": "treatment" if flip else "control",
            "bucket": (p["bucket"] + 5000) % 10000,
        }
        return {**p, **arm}

    def expose(u: int, variant: str, ts: Any, **kw: Any) -> dict[str, Any]:
        bucket = rng.randrange(5000) + (5000 if variant == "treatment" else 0)
        phase = kw.pop("phase", rng.choice(PHASES))
        weights = kw.pop("weights", rng.choice((HALF, ONE)))
        segment = kw.pop("segment", rng.choice(("ios", "web", None)))
        return w.exposure(
            f"u{u}", variant, ts, event_id=kw.pop("event_id", eid()), phase=(phase, weights),
            bucket=bucket, attributes={"platform": segment} if segment else None, **kw,
        )["jsonPayload"]  # fmt: skip

    out: list[dict[str, Any]] = []
    # The first exposure of each phase: a tie of two records with other weights (1/1, 50/50).
    first = T0 - timedelta(hours=1)
    for u, phase in enumerate(PHASES):
        for weights in (HALF, ONE):
            out.append(expose(u, "control", first, phase=phase, weights=weights))
    for u in range(len(PHASES), units):
        t = T0 + timedelta(minutes=rng.randrange(3 * 1440), microseconds=rng.randrange(10**6))
        pair = [expose(u, v, t) for v in ("control", "treatment")]
        out += pair
        if u % 5 == 0:  # one of the tied events again, re-stamped later and in the other arm
            out.append({**other_arm(pair[0]), "ts": iso(t + timedelta(seconds=1))})
        if u % 5 == 1:  # again at the same time, in the other arm, or without the attribute
            out.append(other_arm(pair[1]))
            out.append({k: v for k, v in pair[0].items() if k != "attributes"})
        if u % 7 == 0:  # a later exposure, whose attribute must not leak into the first's
            out.append(expose(u, "treatment", t + timedelta(minutes=3), segment="android"))
        value = float(u + 1)  # the revenue sums identify which units a cell holds
        buy = w.outcome(f"u{u}", "purchase", t + timedelta(hours=1), value, event_id=eid())
        out.append(buy["jsonPayload"])
        if u % 6 == 0:  # the purchase again, with another value: the smaller is kept
            out.append({**buy["jsonPayload"], "value": value + 100_000})
    return out


def expected(payloads: list[dict[str, Any]]) -> Tied:
    """The rule, in plain Python."""
    exposures: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, dict[str, Any]] = {}

    def seg(p: dict[str, Any]) -> str | None:
        return (p.get("attributes") or {}).get("platform")

    def copy_key(p: dict[str, Any]) -> tuple[Any, ...]:
        if p["type"] == "exposure":
            fields = (p["unit_id"], p["variant"], p.get("phase") or "", p.get("bucket"), seg(p))
        else:
            fields = (p["unit_id"], p["name"], p.get("value"))
        return (p["ts"], *(_last(f) for f in fields))  # the ts strings sort as times

    for p in payloads:
        kept = exposures if p["type"] == "exposure" else outcomes
        old = kept.get(p["event_id"])
        if old is None or copy_key(p) < copy_key(old):
            kept[p["event_id"]] = p
    first: dict[str, dict[str, Any]] = {}
    exposures_of: dict[str, int] = defaultdict(int)
    for p in exposures.values():
        u = p["unit_id"]
        exposures_of[u] += 1
        if u not in first or (p["ts"], p["event_id"]) < (first[u]["ts"], first[u]["event_id"]):
            first[u] = p
    revenue: dict[str, float] = defaultdict(float)
    for p in outcomes.values():
        if p["unit_id"] in first and p["ts"] >= first[p["unit_id"]]["ts"]:
            revenue[p["unit_id"]] += p["value"]
    cells: dict[Cell, list[int]] = defaultdict(lambda: [0, 0, 0])
    for u, p in first.items():
        c = cells[(p["variant"], p["phase"], seg(p))]
        c[0] += 1
        c[1] += int(revenue[u])
        c[2] += exposures_of[u]
    weights = {}
    for phase in PHASES:
        mine = [p for p in payloads if p["type"] == "exposure" and p["phase"] == phase]
        head = min(mine, key=lambda p: (p["ts"], p["event_id"]))
        weights[phase] = tuple(float(a["weight"]) for a in head["weights"])
    return Tied(payloads, {k: (n, r, e) for k, (n, r, e) in cells.items()}, weights)


@pytest.fixture(scope="module")
def tied() -> Tied:
    return expected(tied_payloads())


def write_shuffled(payloads: list[dict[str, Any]], root: Path, order: int) -> Path:
    """The payloads as LogEntry lines in random order, split at random into 6 files."""
    rng = random.Random(order)
    log = "projects/test/logs/abgate-events"
    lines = [json.dumps({"logName": log, "timestamp": p["ts"], "jsonPayload": p}) for p in payloads]
    rng.shuffle(lines)
    files: dict[int, list[str]] = defaultdict(list)
    for line in lines:
        files[rng.randrange(6)].append(line)
    for i, chunk in files.items():
        path = (
            root / "abgate-events" / "2026" / "11" / f"{20 + i:02d}" / "00:00:00_00:59:59_S0.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
    return root


def figures(
    cohort: Cohort,
) -> tuple[dict[Cell, tuple[int, int, int]], dict[str, tuple[float, ...]]]:
    """Per (variant, phase, segment) at the last look: units, Σ revenue, Σ exposures; and each
    phase's arm weights."""
    revenue, per_exposure = cohort.plan.metrics
    last = max(look.day for look in cohort.scan.looks)
    cells = {}
    for look in cohort.scan.looks:
        if look.day == last:
            s = look.stats
            cells[(look.variant, look.phase, look.segment)] = (
                s.count,
                round(s.mean[revenue.y] * s.count),
                round(s.mean[per_exposure.den] * s.count),
            )
    weights = {p.id: tuple(a[1] for a in p.arms) for p in cohort.scan.phases}
    return cells, weights


def test_the_tied_archive_holds_ties_that_matter(tied: Tied) -> None:
    """The ties are real: two exposures of one unit at one microsecond in other variants,
    copies of one event that differ, and the rule puts units in both arms, both phases and
    every segment."""
    by_time: dict[tuple[str, str], set[str]] = defaultdict(set)
    copies: dict[str, set[str]] = defaultdict(set)
    for p in tied.payloads:
        copies[p["event_id"]].add(json.dumps(p, sort_keys=True))
        if p["type"] == "exposure":
            by_time[(p["unit_id"], p["ts"])].add(p["variant"])
    assert sum(len(v) > 1 for v in by_time.values()) >= 250
    assert sum(len(v) > 1 for v in copies.values()) >= 150
    variants = {c[0] for c in tied.cells}
    phases = {c[1] for c in tied.cells}
    segments = {c[2] for c in tied.cells}
    assert (variants, phases, segments) == ({"control", "treatment"}, set(PHASES), {"ios", "web", None})  # fmt: skip
    for phase in PHASES:  # its first instant holds records with either weights
        mine = [p for p in tied.payloads if p["type"] == "exposure" and p["phase"] == phase]
        start = min(p["ts"] for p in mine)
        assert len({json.dumps(p["weights"]) for p in mine if p["ts"] == start}) == 2


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_first_exposure_is_the_smallest_ts_and_event_id_whatever_the_line_order(
    tied: Tied, order: int, tmp_path: Path
) -> None:
    """Shuffled lines, files and 1-4 threads: each unit's variant, phase and segment, each
    event's copy and each phase's weights are the rule's, never the engine's pick."""
    root = write_shuffled(tied.payloads, tmp_path, order)
    for threads in (1, 2, 3, 4):
        cohort = ArchiveSource(root, threads=threads).read(experiment(YAML), segment="platform")
        cells, weights = figures(cohort)
        assert cells == tied.cells, f"threads={threads}"
        assert weights == tied.weights, f"threads={threads}"
        assert cohort.scan.excluded == {}
