"""The terminal form of a report: a rich table per metric and an SRM banner."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from analysis.formats import DECISION_LABELS, interval, number, p_value, percent, significant
from analysis.report import MetricResult, Report


def _p(p: float | None, alpha: float) -> str:
    text = p_value(p)
    return f"[bold green]{text}[/]" if significant(p, alpha) else text


def _metric_table(m: MetricResult, report: Report) -> Table:
    extra = m.comparisons[0] if m.comparisons else None
    title = f"{escape(m.name)} ({escape(m.describe())})"
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("variant", "value", "diff", "diff CI", "lift", "lift CI", "p", "p Holm"):
        t.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    if extra is not None and extra.p_value_sequential is not None:
        t.add_column("p seq", justify="right", no_wrap=True)
    if extra is not None and extra.power is not None:
        t.add_column("MDE", justify="right")
        if extra.power.target_mde is not None:
            t.add_column(f"days to MDE {extra.power.target_mde:.1%}", justify="right")
    a = report.alpha
    ctl = report.control
    base = [f"{ctl} [dim](ctl)[/]", number(m.values.get(ctl)), "", "", "", "", "", ""]
    if extra is not None:
        base += [""] * (len(t.columns) - len(base))
    t.add_row(*base)
    for c in m.comparisons:
        row = [c.variant, number(m.values.get(c.variant)), number(c.diff), interval(c.diff_ci), percent(c.lift),
               interval(c.lift_ci, pct=True), _p(c.p_value, a), _p(c.p_value_adjusted, a)]  # fmt: skip
        if c.p_value_sequential is not None:
            row.append(_p(c.p_value_sequential, a))
        if c.power is not None:
            row.append(percent(c.power.mde).lstrip("+"))
            if c.power.target_mde is not None:
                row.append(number(c.power.days_to_target, ".1f"))
        t.add_row(*row)
    return t


_VERDICT_STYLE = {
    "ship": "bold green",
    "do_not_ship": "bold red",
    "keep_running": "bold yellow",
    "invalid": "bold white on red",
}


def verdict_line(report: Report) -> str:
    """The verdict and its reason, as rich markup (the table's first line)."""
    if report.verdict is None:
        return "[bold]Verdict:[/] none (the report was built without one)"
    decision = report.verdict.decision
    word, style = DECISION_LABELS[decision].upper(), _VERDICT_STYLE[decision]
    return f"[bold]Verdict:[/] [{style}]{word}[/]: {escape(report.verdict.reason)}"


def render_table(report: Report, console: Console) -> None:
    """Print the report: the verdict first, then the header, SRM status (a red banner when
    p < 0.001) and one table per metric."""
    console.print(verdict_line(report), highlight=False)
    if report.skipped is not None and report.skipped.lines:
        console.print(
            f"[bold yellow]Warning:[/] {escape(report.skipped.warning())}", highlight=False
        )
    for warning in report.warnings:
        console.print(f"[bold yellow]Warning:[/] {escape(warning)}", highlight=False)
    units = ", ".join(
        f"{k}: {v.units} units / {v.exposures} exposures" for k, v in report.variants.items()
    )
    console.print(
        f"[bold]Experiment {report.experiment}[/]  control={report.control}  alpha={report.alpha}"
    )
    console.print(units, highlight=False)
    srm = number(report.srm_p_value)
    if report.srm_alarm:
        console.print(
            Panel(
                f"SAMPLE RATIO MISMATCH: p = {srm}. Units per variant do not match the configured "
                "weights; the comparisons below are not trustworthy until the cause is found.",
                style="bold white on red",
            )
        )
    else:
        console.print(f"SRM check: p = {srm} (ok)", highlight=False)
    if len(report.phases) > 1 or any(p.excluded for p in report.phases):
        console.print(phase_table(report))
    for m in report.metrics:
        console.print(_metric_table(m, report))
    if report.holdout is not None:
        console.print(holdout_table(report))
    if report.segment_by is not None:
        console.print(
            f"[yellow]Segments by {report.segment_by}: exploratory[/] (p-values Holm-adjusted "
            "across segments; an effect in one segment is a hypothesis to test, not a finding)"
        )
        for table in segment_tables(report):
            console.print(table)


def phase_table(report: Report) -> Table:
    """One row per allocation phase: span, weights, kept and excluded units, SRM."""
    t = Table(
        title="Allocation phases (SRM per phase against its kept buckets; Holm across phases)"
    )
    for col in ("phase", "from", "to", "weights", "units", "excluded", "SRM p", "p Holm"):
        t.add_column(col, justify="right" if col in ("SRM p", "p Holm") else "left")
    for p in report.phases:
        style = "bold red" if p.srm_p_value_adjusted < 0.001 else ""
        t.add_row(
            p.id or "(none logged)",
            f"{p.start:%Y-%m-%d %H:%M}" if p.start else "",
            f"{p.end:%Y-%m-%d %H:%M}" if p.end else "",
            "/".join(f"{w:g}" for w in p.weights.values()),
            ", ".join(f"{k} {n}" for k, n in p.units.items()),
            ", ".join(f"{k} {n}" for k, n in p.excluded.items()) or "0",
            number(p.srm_p_value),
            number(p.srm_p_value_adjusted),
            style=style,
        )
    return t


def holdout_table(report: Report) -> Table:
    """Each arm against the holdout (units kept out of the experiment, served the default)."""
    assert report.holdout is not None
    t = Table(
        title=f"Against the holdout ({report.holdout.units} units)",
        caption=f"p Holm: adjusted across the {report.holdout.family} comparisons (every arm ×"
        " every metric); CIs unadjusted",
    )
    cols = ("metric", "variant", "holdout", "variant value", "diff", "diff CI (unadj.)", "lift")
    for col in (*cols, "p", "p Holm"):
        t.add_column(col, justify="left" if col in ("metric", "variant") else "right")
    for c in report.holdout.comparisons:
        t.add_row(
            c.metric,
            c.variant,
            number(c.value_holdout),
            number(c.value_variant),
            number(c.diff),
            interval(c.diff_ci),
            percent(c.lift),
            _p(c.p_value, report.alpha),
            _p(c.p_value_adjusted, report.alpha),
        )
    return t


def segment_tables(report: Report) -> list[Table]:
    """One table per metric: each segment's comparison, p Holm-adjusted across segments."""
    out = []
    for m in report.metrics:
        t = Table(title=f"{m.name} by {report.segment_by}")
        for col in ("segment", "variant", "units", "diff", "diff CI", "lift", "p", "p Holm"):
            t.add_column(col, justify="left" if col in ("segment", "variant") else "right")
        for seg in report.segments:
            for c in seg.metrics.get(m.name, []):
                t.add_row(
                    seg.value,
                    c.variant,
                    ", ".join(f"{k} {n}" for k, n in seg.units.items()),
                    number(c.diff),
                    interval(c.diff_ci),
                    percent(c.lift),
                    _p(c.p_value, report.alpha),
                    _p(c.p_value_adjusted, report.alpha),
                )
        out.append(t)
    return out
