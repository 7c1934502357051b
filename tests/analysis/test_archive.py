"""Reading the archive: dedup, first exposure, outcome windows, robustness, errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from analysis import ArchiveError, build_report
from analysis.archive import scan_archive
from tests.analysis.analysis_testkit import T0, ArchiveWriter, experiment, simulate_archive

M = timedelta(minutes=1)


def _values(root: Path) -> dict[str, dict[str, float | None]]:
    rep = build_report(experiment(), root).to_dict()
    return {m["name"]: m["values"] for m in rep["metrics"]} | {"_variants": rep["variants"]}  # type: ignore[dict-item]


def test_rules_dedup_first_exposure_windows_forced_and_strangers(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    # u1: control first, later served treatment -> stays control; 2 exposures (one duplicated line)
    dup = w.exposure("u1", "control", T0, event_id="x1")
    w.raw(json.dumps(dup), T0)
    w.exposure("u1", "treatment", T0 + 5 * M)
    w.outcome("u1", "purchase", T0 - M, 100.0)  # before first exposure: ignored
    o = w.outcome("u1", "purchase", T0, 7.0, event_id="p1")  # exactly at first exposure: counts
    w.raw(json.dumps(o), T0 + 90 * M)  # the same event delivered twice, in another file
    # u2: treatment; forced exposure earlier in control is dropped; click at/after exposure
    w.exposure("u2", "control", T0 - 10 * M, forced=True)
    w.exposure("u2", "treatment", T0 + M)
    w.outcome("u2", "click", T0 + 2 * M)
    w.outcome("u2", "click", T0 + 3 * M)
    w.outcome("u2", "purchase", T0 + 4 * M, None)  # a purchase without value: converts, adds 0
    # u3: only forced exposures -> not in the analysis; u4: outcomes only -> ignored
    w.exposure("u3", "control", T0, forced=True)
    w.outcome("u3", "purchase", T0 + M, 50.0)
    w.outcome("u4", "purchase", T0 + M, 50.0)
    # u5: another experiment's exposure -> ignored
    w.exposure("u5", "control", T0, experiment="other-exp")
    # lines that are not abgate events
    w.raw(
        json.dumps(
            {
                "logName": "projects/p/logs/x",
                "textPayload": "hello",
                "timestamp": "2026-11-20T09:00:00Z",
            }
        ),
        T0,
    )
    w.raw(json.dumps({"jsonPayload": {"type": "heartbeat", "event_id": "h"}}), T0)
    v = _values(w.write())
    assert v["_variants"] == {
        "control": {"units": 1, "exposures": 2},
        "treatment": {"units": 1, "exposures": 1},
    }
    assert v["conversion"] == {"control": 1.0, "treatment": 1.0}
    assert v["revenue"] == {"control": 7.0, "treatment": 0.0}
    assert v["clicks_per_exposure"] == {"control": 0.0, "treatment": 2.0}


def test_since_and_until_bound_exposures_and_outcomes(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    w.exposure("early", "control", T0 - timedelta(days=1))
    w.exposure("in", "control", T0)
    w.outcome("in", "purchase", T0 + M, 5.0)
    w.outcome("in", "purchase", T0 + timedelta(days=2), 11.0)  # after until
    w.exposure("late", "treatment", T0 + timedelta(days=3))
    rep = build_report(experiment(), w.write(), since=T0, until=T0 + timedelta(days=1))
    assert {k: v.units for k, v in rep.variants.items()} == {"control": 1, "treatment": 0}
    assert rep.metrics[1].values["control"] == 5.0


def _reference(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per-unit values computed in plain Python, independently of the SQL."""
    events: dict[str, dict[str, object]] = {}
    for f in root.rglob("*.json"):
        for line in f.read_text().splitlines():
            p = json.loads(line).get("jsonPayload") or {}
            if p.get("type") in ("exposure", "outcome"):
                events[str(p["event_id"])] = p
    first: dict[str, tuple[str, str, int]] = {}
    for p in events.values():
        if p["type"] == "exposure" and p["experiment"] == "home-recs-demo" and not p.get("forced"):
            u, ts = str(p["unit_id"]), str(p["ts"])
            old = first.get(u)
            if old is None or ts < old[0]:
                first[u] = (ts, str(p["variant"]), (old[2] if old else 0) + 1)
            else:
                first[u] = (old[0], old[1], old[2] + 1)
    per: dict[str, dict[str, float]] = {
        u: {"conv": 0, "rev": 0, "clicks": 0, "exp": e[2]} for u, e in first.items()
    }
    for p in events.values():
        u = str(p.get("unit_id"))
        if p["type"] == "outcome" and u in first and str(p["ts"]) >= first[u][0]:
            if p["name"] == "purchase":
                per[u]["conv"] = 1
                per[u]["rev"] += float(p["value"] or 0.0)  # type: ignore[arg-type]
            elif p["name"] == "click":
                per[u]["clicks"] += 1
    out: dict[str, dict[str, np.ndarray]] = {}
    for u, vals in per.items():
        d = out.setdefault(first[u][1], {k: np.array([]) for k in vals})
        for k, x in vals.items():
            d[k] = np.append(d[k], x)
    return out


def test_duckdb_aggregates_match_an_independent_python_reading(tmp_path: Path) -> None:
    root = simulate_archive(tmp_path, units=800, rates={"control": 0.2, "treatment": 0.3}, seed=7)
    ref = _reference(root)
    looks = scan_archive(experiment(), root)[1].looks
    last = max(look.day for look in looks)  # the last look: every unit, every outcome
    by_variant = {look.variant: look.stats for look in looks if look.day == last}
    for v, d in ref.items():
        agg = by_variant[v]
        assert agg.count == len(d["conv"])
        assert agg.sum("exposures") == pytest.approx(d["exp"].sum())
        assert agg.mean["y0"] == pytest.approx(d["conv"].mean())
        assert agg.var["y1"] == pytest.approx(d["rev"].var(ddof=1))
        assert agg.cov[("num2", "den2")] == pytest.approx(np.cov(d["clicks"], d["exp"])[0, 1])
    assert {look.day for look in looks} == {(T0 + timedelta(days=i)).date() for i in range(3)}


def test_missing_or_empty_archive_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a directory"):
        build_report(experiment(), tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match=r"no \*\.json"):
        build_report(experiment(), tmp_path / "empty")
