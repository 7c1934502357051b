"""The HTML form of a report: one self-contained page (inline CSS and SVG, no scripts, no CDN).

Sections: the verdict and its reason, the report's metadata (generated at, window, source,
experiment version, CUPED variance reduction), summary, SRM status, a forest plot of lifts with
intervals, a table per metric (with the ``--sequential`` and ``--power`` columns when present,
as the terminal table), cumulative lift over enrolment days per metric, and units per variant
per day. A lift is green only when its interval excludes zero in the metric's good direction.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from analysis.formats import DECISION_LABELS, number, p_value, percent, significant
from analysis.report import MetricResult, Report
from analysis.svg import ForestRow, Tone, bar_chart, forest_plot, line_chart

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{background:#dafbe1;padding:8px 12px}
.warn{background:#fff8c5;border-left:6px solid #9a6700;padding:10px 14px}
.alarm{background:#cf222e;color:#fff;padding:10px 14px;font-weight:bold}.sig{font-weight:bold}
.muted{color:#666}.good{color:#1a7f37;font-weight:bold}.bad{color:#cf222e;font-weight:bold}
.neutral{color:inherit}.meta th{text-align:left;color:#666;font-weight:normal}.meta td{text-align:left}
.verdict{padding:10px 14px;font-size:16px;border-left:6px solid}.verdict.ship{background:#dafbe1;border-color:#1a7f37}
.verdict.do_not_ship{background:#ffebe9;border-color:#cf222e}.verdict.keep_running{background:#fff8c5;border-color:#9a6700}
.verdict.invalid{background:#cf222e;color:#fff;border-color:#82071e}
"""


def _p(p: float | None, alpha: float) -> str:
    text = escape(p_value(p))
    return f'<span class="sig">{text}</span>' if significant(p, alpha) else text


def tone(direction: str, low: float, high: float) -> Tone:
    """good when the interval excludes zero in the good direction, bad in the other."""
    if math.isnan(low) or math.isnan(high) or low <= 0 <= high:
        return "neutral"
    better = low > 0 if direction == "increase" else high < 0
    return "good" if better else "bad"


def _metric_table(m: MetricResult, r: Report) -> str:
    seq = any(c.p_value_sequential is not None for c in m.comparisons)
    power = next((c.power for c in m.comparisons if c.power is not None), None)
    head = ["variant", "value", "diff", "diff CI", "lift", "lift CI", "p", "p (Holm)"]
    head += ["p (sequential)"] if seq else []
    if power is not None:
        head.append("MDE")
        if power.target_mde is not None:
            head.append(f"days to MDE {power.target_mde:.1%}")
    blank = "<td></td>" * (len(head) - 2)
    rows = [
        f"<tr><td>{escape(r.control)} (control)</td><td>{number(m.values.get(r.control))}</td>{blank}</tr>"
    ]
    for c in m.comparisons:
        t = tone(m.direction, *c.lift_ci)
        cells = [
            escape(c.variant), number(m.values.get(c.variant)), number(c.diff),
            f"[{number(c.diff_ci[0])}, {number(c.diff_ci[1])}]",
            f'<span class="{t}">{percent(c.lift)}</span>',
            f'<span class="{t}">[{percent(c.lift_ci[0])}, {percent(c.lift_ci[1])}]</span>',
            _p(c.p_value, r.alpha), _p(c.p_value_adjusted, r.alpha),
        ]  # fmt: skip
        if seq:
            cells.append(_p(c.p_value_sequential, r.alpha))
        if c.power is not None:
            cells.append(percent(c.power.mde).lstrip("+"))
            if c.power.target_mde is not None:
                cells.append(number(c.power.days_to_target, ".1f"))
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f"<h3>{escape(m.name)} <span class='muted'>({escape(m.describe())})</span></h3>"
        f"<table><tr>{th}</tr>{''.join(rows)}</table>"
    )


def _verdict(r: Report) -> str:
    if r.verdict is None:
        return ""
    v = r.verdict
    warning = (
        f'<p class="warn" id="skipped"><b>Warning:</b> {escape(r.skipped.warning())}</p>'
        if r.skipped is not None and r.skipped.lines
        else ""
    ) + "".join(f'<p class="warn"><b>Warning:</b> {escape(w)}</p>' for w in r.warnings)
    return (
        f'<p class="verdict {v.decision}" id="verdict"><b>Verdict: {DECISION_LABELS[v.decision]}</b>. '
        f"{escape(v.reason)}</p>{warning}"
    )


def _metadata(r: Report) -> str:
    """Generated at, window, source, configuration version, alpha, CUPED per metric."""
    rows = [
        ("generated at", r.generated_at.isoformat(timespec="seconds") if r.generated_at else "—"),
        ("window", f"{r.since.isoformat() if r.since else 'start of the source'} to "
                   f"{r.until.isoformat() if r.until else 'end of the source'}"),
        ("source", r.source or "—"),
        ("experiment version", str(r.config_version) if r.config_version is not None else
         "unknown (read from a file)"),
        ("alpha", f"{r.alpha:g} ({1 - r.alpha:.0%} intervals)"),
    ]  # fmt: skip
    for m in r.metrics:
        vr = m.cuped_variance_reduction
        if m.cuped and vr is not None:
            rows.append((f"CUPED variance reduction, {m.name}", number(vr * 100, ".1f") + "%"))
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _phases(r: Report) -> str:
    """The allocation phases: span, weights, kept and excluded units, SRM per phase."""
    if len(r.phases) <= 1 and not any(p.excluded for p in r.phases):
        return ""

    def when(t: datetime | None) -> str:
        return f"{t:%Y-%m-%d %H:%M}" if t else ""

    body = "".join(
        ('<tr class="bad">' if p.srm_p_value_adjusted < 0.001 else "<tr>")
        + f"<td><code>{escape(p.id or '(none logged)')}</code></td>"
        + f"<td>{when(p.start)}</td><td>{when(p.end)}</td>"
        + f"<td>{escape('/'.join(f'{w:g}' for w in p.weights.values()))}</td>"
        + f"<td>{escape(', '.join(f'{k} {n}' for k, n in p.units.items()))}</td>"
        + f"<td>{escape(', '.join(f'{k} {n}' for k, n in p.excluded.items()) or '0')}</td>"
        + f"<td>{number(p.srm_p_value)}</td><td>{number(p.srm_p_value_adjusted)}</td></tr>"
        for p in r.phases
    )
    return (
        '<h2>Allocation phases</h2><p class="muted">Each phase\'s units are checked against the '
        "shares of its kept buckets (Holm across phases); units whose arm changed in a later "
        "phase are excluded by bucket; estimates are stratified by enrolment phase.</p>"
        "<table><tr><th>phase</th><th>from</th><th>to</th><th>weights</th><th>units</th>"
        f"<th>excluded</th><th>SRM p</th><th>p Holm</th></tr>{body}</table>"
    )


def _holdout(r: Report) -> str:
    if r.holdout is None:
        return ""
    rows = "".join(
        f"<tr><td>{escape(c.metric)}</td><td>{escape(c.variant)}</td><td>{number(c.value_holdout)}</td>"
        f"<td>{number(c.value_variant)}</td><td>{number(c.diff)}</td>"
        f"<td>[{number(c.diff_ci[0])}, {number(c.diff_ci[1])}]</td><td>{percent(c.lift)}</td>"
        f"<td>{_p(c.p_value, r.alpha)}</td><td>{_p(c.p_value_adjusted, r.alpha)}</td></tr>"
        for c in r.holdout.comparisons
    )
    return (
        f"<h2>Against the holdout ({r.holdout.units} units)</h2>"
        f"<p>p Holm: adjusted across the {r.holdout.family} comparisons (every arm × every"
        " metric). The intervals are unadjusted.</p>"
        "<table><tr><th>metric</th><th>variant</th><th>holdout</th><th>variant value</th>"
        "<th>diff</th><th>diff CI (unadjusted)</th><th>lift</th><th>p</th><th>p Holm</th></tr>"
        f"{rows}</table>"
    )


def _segments(r: Report) -> str:
    if r.segment_by is None:
        return ""
    rows = "".join(
        f"<tr><td>{escape(m)}</td><td>{escape(s.value)}</td><td>{escape(c.variant)}</td>"
        f"<td>{number(c.diff)}</td><td>[{number(c.diff_ci[0])}, {number(c.diff_ci[1])}]</td>"
        f"<td>{percent(c.lift)}</td><td>{_p(c.p_value, r.alpha)}</td>"
        f"<td>{_p(c.p_value_adjusted, r.alpha)}</td></tr>"
        for s in r.segments
        for m, comps in s.metrics.items()
        for c in comps
    )
    return (
        f'<h2>Segments by {escape(r.segment_by)} (exploratory)</h2><p class="muted">p-values '
        "Holm-adjusted across segments; an effect in one segment is a hypothesis to test.</p>"
        "<table><tr><th>metric</th><th>segment</th><th>variant</th><th>diff</th><th>diff CI</th>"
        f"<th>lift</th><th>p</th><th>p Holm</th></tr>{rows}</table>"
    )


def render_html(report: Report) -> str:
    """The report as a standalone HTML page: the verdict first, then what the table shows."""
    r = report
    share = r.expected_share
    if len(r.phases) > 1:  # each phase enrolled under its own weights: expect their mixture
        n = sum(sum(p.units.values()) for p in r.phases) or 1
        share = {
            k: sum(sum(p.units.values()) * p.expected_share.get(k, 0.0) for p in r.phases) / n
            for k in r.variants
        }
    total = sum(v.units for v in r.variants.values()) or 1
    summary = "".join(
        f"<tr><td>{escape(k)}</td><td>{v.units}</td><td>{v.units / total:.2%}</td>"
        f"<td>{share.get(k, 0.0):.2%}</td><td>{v.exposures}</td></tr>"
        for k, v in r.variants.items()
    )
    srm = (
        f'<p class="alarm">Sample ratio mismatch: p = {number(r.srm_p_value)}. Units per variant do not match the '
        "configured weights; do not trust the comparisons until the cause is found.</p>"
        if r.srm_alarm
        else f'<p class="ok">SRM check passed: p = {number(r.srm_p_value)} (alarm below 0.001).</p>'
    )
    rows = [
        ForestRow(
            f"{m.name} · {c.variant}",
            c.lift,
            c.lift_ci[0],
            c.lift_ci[1],
            tone(m.direction, *c.lift_ci),
        )
        for m in r.metrics
        for c in m.comparisons
    ]
    days = [d.day.isoformat() for d in r.daily]
    over_time = []
    for m in r.metrics:
        series = {
            c.variant: [
                d.lifts.get(m.name, {}).get(c.variant, (math.nan, (math.nan, math.nan)))
                for d in r.daily
            ]
            for c in m.comparisons
        }
        flat = {k: [(v, ci[0], ci[1]) for v, ci in pts] for k, pts in series.items()}
        over_time.append(f"<h3>{escape(m.name)}</h3>{line_chart(days, flat)}")
    units = {k: [d.new_units.get(k, 0) for d in r.daily] for k in r.variants}
    level = f"{1 - r.alpha:.0%}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {escape(r.experiment)}</title>
<style>{_CSS}</style></head><body>
<h1>Experiment <code>{escape(r.experiment)}</code></h1>
{_verdict(r)}
{_metadata(r)}
<h2>Summary</h2>
<p class="muted">control: {escape(r.control)}</p>
<table><tr><th>variant</th><th>units</th><th>share</th><th>expected</th><th>exposures</th></tr>{summary}</table>
{srm}
{_phases(r)}
<h2>Lift by metric ({level} CI)</h2>
<p class="muted">Green: the interval excludes zero in the metric's good direction; red: in the
bad direction; grey: it does not exclude zero.</p>
{forest_plot(rows)}
{"".join(_metric_table(m, r) for m in r.metrics)}
{_holdout(r)}
{_segments(r)}
<h2>Cumulative lift by enrolment day</h2>
<p class="muted">Each point is a look: the units enrolled by the end of that UTC day, with only the outcomes logged by then (docs/analysts.md, "Looks"); stratified by phase.</p>
{"".join(over_time)}
<h2>Units per variant per day (first exposure)</h2>
{bar_chart(days, units)}
</body></html>
"""
