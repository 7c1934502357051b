"""The report's verdict: ship, do not ship, keep running, or invalid, with the reason.

A pure function of a built ``Report`` and its ``Experiment`` (which metric is primary, which are
guardrails, which direction is good). Per non-control variant, lifts are first *oriented* so
that good is positive (a ``direction: decrease`` metric's lift and interval change sign):

- **invalid**: a sample ratio mismatch check rejects (p < 0.001): no comparison can be trusted;
  or more than 1% of the lines read were skipped as malformed (torn lines, incomplete
  records): a few torn lines after crashes are expected and harmless, but that many means
  the logging was broken, maybe for one replica or one arm, so the figures may be biased;
- **do_not_ship**: the primary is significantly worse (Holm-adjusted p < alpha, oriented diff
  < 0) or a guardrail is breached;
- **ship**: the primary is significantly better and every guardrail is ok;
- **keep_running**: anything else; the reason says what is missing.

A guardrail with margin m and oriented relative-lift interval (lo, hi) at level 1 − alpha is
**ok** when lo > −m (non-inferiority shown: any harm is smaller than the margin), **breached**
when it is not ok and hi < 0 (significantly worse), and **inconclusive** otherwise.
With ``--sequential``, a win or a loss also needs the always-valid p-value below alpha, so a
verdict read at every daily look keeps its error rate.

The experiment's verdict: invalid on SRM; else ship when a variant ships (the one with the best
oriented primary lift); else do_not_ship when every variant is do_not_ship; else keep_running.

References:
    Kohavi, Tang, Xu (2020), *Trustworthy Online Controlled Experiments*, ch. 3 (SRM), ch. 7
    (guardrail metrics); Wellek (2010), *Testing Statistical Hypotheses of Equivalence and
    Noninferiority*, ch. 2 (non-inferiority by a confidence bound against a margin).
"""

from __future__ import annotations

import math

from analysis.report import (
    Comparison,
    Decision,
    GuardrailStatus,
    Interval,
    MetricResult,
    Report,
    VariantVerdict,
    Verdict,
)
from experiments import Experiment, Metric

SRM_THRESHOLD = 0.001
SKIPPED_THRESHOLD = 0.01  # share of malformed lines read above which the verdict is invalid


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2%}"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else ("< 0.0001" if p < 1e-4 else f"= {p:.4f}")


def _sign(metric: Metric) -> float:
    return -1.0 if metric.direction == "decrease" else 1.0


def oriented_lift_ci(metric: Metric, c: Comparison) -> Interval:
    """The relative-lift interval with good made positive (sign flipped for ``decrease``)."""
    lo, hi = c.lift_ci
    return (lo, hi) if metric.direction == "increase" else (-hi, -lo)


def guardrail_status(metric: Metric, c: Comparison) -> GuardrailStatus:
    """ok: oriented lo > −margin; breached: not ok and oriented hi < 0; else inconclusive."""
    lo, hi = oriented_lift_ci(metric, c)
    margin = metric.margin or 0.0
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > -margin:
        return "ok"
    if hi < 0:
        return "breached"
    return "inconclusive"


def _decisive_p(c: Comparison) -> float:
    """Holm-adjusted p, and with --sequential never below the always-valid p-value."""
    p = c.p_value_adjusted
    if c.p_value_sequential is not None and not math.isnan(c.p_value_sequential):
        p = max(p, c.p_value_sequential)
    return p


def _figures(metric: Metric, c: Comparison) -> str:
    better = "higher" if metric.direction == "increase" else "lower"
    seq = c.p_value_sequential
    always_valid = f", always-valid p {_p(seq)}" if seq is not None else ""
    return (
        f"lift {_pct(c.lift)} [{_pct(c.lift_ci[0])}, {_pct(c.lift_ci[1])}], "
        f"p (Holm) {_p(c.p_value_adjusted)}{always_valid}, {better} is better"
    )


def _comparison(result: MetricResult | None, variant: str) -> Comparison | None:
    if result is None:
        return None
    return next((c for c in result.comparisons if c.variant == variant), None)


def _power_note(c: Comparison) -> str:
    if c.power is None or math.isnan(c.power.mde):
        return ""
    note = f"; detectable now: {abs(c.power.mde):.2%}"
    if c.power.target_mde is not None and c.power.days_to_target is not None:
        days = c.power.days_to_target
        if not math.isnan(days):
            note += f", about {days:.1f} more days to reach {c.power.target_mde:.2%}"
    return note


def _variant_verdict(
    variant: str, report: Report, experiment: Experiment, results: dict[str, MetricResult]
) -> VariantVerdict:
    alpha = report.alpha
    primary = experiment.primary_metric
    pc = _comparison(results.get(primary.name), variant) if primary else None
    guard: dict[str, GuardrailStatus] = {}
    guard_figures: dict[str, str] = {}
    for m in experiment.metrics:
        if m.role != "guardrail":
            continue
        gc = _comparison(results.get(m.name), variant)
        guard[m.name] = guardrail_status(m, gc) if gc else "inconclusive"
        guard_figures[m.name] = (
            f"{_figures(m, gc)}, margin {m.margin or 0.0:.2%}" if gc else "no estimate"
        )

    def verdict(decision: Decision, reason: str) -> VariantVerdict:
        name = primary.name if primary else None
        return VariantVerdict(variant, decision, reason, name, pc, guard)

    breached = [g for g, s in guard.items() if s == "breached"]
    inconclusive = [g for g, s in guard.items() if s == "inconclusive"]
    good = bad = False
    if primary is not None and pc is not None:
        p = _decisive_p(pc)
        oriented = _sign(primary) * pc.diff
        significant = not math.isnan(p) and p < alpha and not math.isnan(oriented)
        good, bad = significant and oriented > 0, significant and oriented < 0
    if bad and primary is not None and pc is not None:
        return verdict(
            "do_not_ship",
            f"{variant} is significantly worse than control on {primary.name}: {_figures(primary, pc)}.",
        )
    if breached:
        g = breached[0]
        return verdict(
            "do_not_ship",
            f"guardrail {g} is breached by {variant} (significantly worse): {guard_figures[g]}.",
        )
    if primary is None:
        return verdict(
            "keep_running",
            "no primary metric (every metric is a guardrail): nothing can show a win.",
        )
    if pc is None or math.isnan(pc.lift_ci[0]) or math.isnan(_decisive_p(pc)):
        return verdict(
            "keep_running",
            f"{primary.name} cannot be estimated yet for {variant} (too few units, or a zero control value).",
        )
    if not good:
        also = f"; guardrails not yet shown ok: {', '.join(inconclusive)}" if inconclusive else ""
        return verdict(
            "keep_running",
            f"{primary.name} is inconclusive for {variant}: {_figures(primary, pc)} "
            f"(needs < {alpha:g}){_power_note(pc)}{also}.",
        )
    if inconclusive:
        g = inconclusive[0]
        return verdict(
            "keep_running",
            f"{variant} wins on {primary.name} ({_figures(primary, pc)}) but guardrail {g} is "
            f"inconclusive: harm beyond its margin is not ruled out ({guard_figures[g]}).",
        )
    ok = f"; guardrails ok: {', '.join(guard)}" if guard else ""
    return verdict(
        "ship",
        f"{variant} beats control on {primary.name}: {_figures(primary, pc)}{ok}.",
    )


def decide(report: Report, experiment: Experiment) -> Verdict:
    """The verdict of ``report`` under ``experiment``'s metric roles (module docstring)."""
    control = str(experiment.control)
    variants = [v for v in experiment.variant_keys if v != control]
    srm = [p for p in report.srm_p_values if not math.isnan(p)]
    if srm and min(srm) < SRM_THRESHOLD:
        reason = (
            f"sample ratio mismatch (p = {min(srm):.3g} < {SRM_THRESHOLD}): units per variant do "
            "not match the configured weights, so no comparison can be trusted; find the cause."
        )
        primary = experiment.primary_metric
        return Verdict(
            "invalid",
            reason,
            {
                v: VariantVerdict(v, "invalid", reason, primary.name if primary else None, None, {})
                for v in variants
            },
        )
    skipped = report.skipped
    if skipped is not None and skipped.share > SKIPPED_THRESHOLD:
        reason = (
            f"{skipped.lines:,} of {skipped.read:,} lines ({skipped.share:.1%}) were malformed "
            f"and skipped, more than {SKIPPED_THRESHOLD:.0%}: the logging was broken and the "
            "figures may be biased; find the cause (abgate logs verify)."
        )
        primary = experiment.primary_metric
        return Verdict(
            "invalid",
            reason,
            {
                v: VariantVerdict(v, "invalid", reason, primary.name if primary else None, None, {})
                for v in variants
            },
        )
    if not experiment.metrics:
        return Verdict(
            "keep_running",
            "no metrics",
            {v: VariantVerdict(v, "keep_running", "no metrics", None, None, {}) for v in variants},
        )
    results = {m.name: m for m in report.metrics}
    per = {v: _variant_verdict(v, report, experiment, results) for v in variants}
    shipping = [vv for vv in per.values() if vv.decision == "ship"]
    if shipping:
        primary = experiment.primary_metric
        sign = _sign(primary) if primary else 1.0

        def oriented_lift(vv: VariantVerdict) -> float:
            lift = vv.primary_comparison.lift if vv.primary_comparison else math.nan
            return -math.inf if math.isnan(lift) else sign * lift

        best = max(shipping, key=oriented_lift)
        if len(shipping) == 1:
            return Verdict("ship", best.reason, per)
        others = ", ".join(vv.variant for vv in shipping if vv is not best)
        return Verdict(
            "ship", f"{best.reason[:-1]}; the best primary lift (also winning: {others}).", per
        )
    if per and all(vv.decision == "do_not_ship" for vv in per.values()):
        return Verdict("do_not_ship", _joined(per), per)
    waiting = {k: vv for k, vv in per.items() if vv.decision == "keep_running"}
    return Verdict("keep_running", _joined(waiting or per), per)


def _joined(per: dict[str, VariantVerdict]) -> str:
    if len(per) == 1:
        return next(iter(per.values())).reason
    return " ".join(vv.reason for vv in per.values())
