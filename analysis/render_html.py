"""The HTML form of a report: one self-contained page (inline CSS and SVG, no scripts, no CDN).

Sections: summary, SRM status, a forest plot of lifts with intervals, a table per metric,
cumulative lift over enrolment days per metric, and units per variant per day.
"""

from __future__ import annotations

import math
from html import escape

from analysis.report import MetricResult, Report
from analysis.svg import ForestRow, bar_chart, forest_plot, line_chart

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{background:#dafbe1;padding:8px 12px}
.alarm{background:#cf222e;color:#fff;padding:10px 14px;font-weight:bold}.sig{color:#1a7f37;font-weight:bold}
.muted{color:#666}
"""


def _n(x: float | None, fmt: str = ".4g") -> str:
    return "—" if x is None or math.isnan(x) else format(x, fmt)


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:+.2%}"


def _p(p: float | None, alpha: float) -> str:
    if p is None or math.isnan(p):
        return "—"
    text = "&lt;0.0001" if p < 1e-4 else f"{p:.4f}"
    return f'<span class="sig">{text}</span>' if p < alpha else text


def _metric_table(m: MetricResult, r: Report) -> str:
    rows = [
        f"<tr><td>{escape(r.control)} (control)</td><td>{_n(m.values.get(r.control))}</td>"
        + "<td></td>" * 6
        + "</tr>"
    ]
    for c in m.comparisons:
        rows.append(
            f"<tr><td>{escape(c.variant)}</td><td>{_n(m.values.get(c.variant))}</td><td>{_n(c.diff)}</td>"
            f"<td>[{_n(c.diff_ci[0])}, {_n(c.diff_ci[1])}]</td><td>{_pct(c.lift)}</td>"
            f"<td>[{_pct(c.lift_ci[0])}, {_pct(c.lift_ci[1])}]</td><td>{_p(c.p_value, r.alpha)}</td>"
            f"<td>{_p(c.p_value_adjusted, r.alpha)}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("variant", "value", "diff", "diff CI", "lift", "lift CI", "p", "p (Holm)")
    )
    cuped = " · CUPED" if m.cuped else ""
    return f"<h3>{escape(m.name)} <span class='muted'>({m.kind}{cuped})</span></h3><table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(report: Report) -> str:
    """The report as a standalone HTML page."""
    r = report
    share = r.expected_share
    total = sum(v.units for v in r.variants.values()) or 1
    summary = "".join(
        f"<tr><td>{escape(k)}</td><td>{v.units}</td><td>{v.units / total:.2%}</td>"
        f"<td>{share.get(k, 0.0):.2%}</td><td>{v.exposures}</td></tr>"
        for k, v in r.variants.items()
    )
    srm = (
        f'<p class="alarm">Sample ratio mismatch: p = {_n(r.srm_p_value)}. Units per variant do not match the '
        "configured weights; do not trust the comparisons until the cause is found.</p>"
        if r.srm_alarm
        else f'<p class="ok">SRM check passed: p = {_n(r.srm_p_value)} (alarm below 0.001).</p>'
    )
    rows = [
        ForestRow(
            f"{m.name} · {c.variant}",
            c.lift,
            c.lift_ci[0],
            c.lift_ci[1],
            c.p_value_adjusted < r.alpha,
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
    window = ""
    if r.since or r.until:
        window = f" · window {r.since.isoformat() if r.since else '…'} to {r.until.isoformat() if r.until else '…'}"
    level = f"{1 - r.alpha:.0%}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {escape(r.experiment)}</title>
<style>{_CSS}</style></head><body>
<h1>Experiment <code>{escape(r.experiment)}</code></h1>
<p class="muted">control: {escape(r.control)} · alpha: {r.alpha} · {level} intervals{escape(window)}
{" · source: " + escape(r.source) if r.source else ""}</p>
<h2>Summary</h2>
<table><tr><th>variant</th><th>units</th><th>share</th><th>expected</th><th>exposures</th></tr>{summary}</table>
{srm}
<h2>Lift by metric ({level} CI)</h2>
{forest_plot(rows)}
{"".join(_metric_table(m, r) for m in r.metrics)}
<h2>Cumulative lift by enrolment day</h2>
<p class="muted">Units enrolled up to each day, with all their outcomes so far.</p>
{"".join(over_time)}
<h2>Units per variant per day (first exposure)</h2>
{bar_chart(days, units)}
</body></html>
"""
