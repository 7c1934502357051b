"""Tiny inline-SVG charts for the HTML report (no JavaScript, no CDN).

Legends sit in a strip above the plot area, never over the data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

Tone = Literal["good", "bad", "neutral"]
TONE_COLOR: dict[Tone, str] = {"good": "#1a7f37", "bad": "#cf222e", "neutral": "#555"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True, slots=True)
class ForestRow:
    """One line of a forest plot: a label, a point estimate, its interval, and its tone.

    ``tone``: good (green) when the interval excludes zero in the metric's good direction,
    bad (red) when it excludes zero in the other, neutral otherwise.
    """

    label: str
    value: float
    low: float
    high: float
    tone: Tone


def _finite(*xs: float) -> bool:
    return all(not math.isnan(x) and not math.isinf(x) for x in xs)


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    k = (b - a) / (hi - lo)
    return k, a - lo * k


def forest_plot(rows: Sequence[ForestRow], width: int = 760) -> str:
    """Lifts with intervals, one row each, around a zero line; values in percent."""
    row_h, left, right, top = 28, 230, 64, 24
    height = top + row_h * max(1, len(rows)) + 30
    pts = [x for r in rows if _finite(r.value, r.low, r.high) for x in (r.low, r.high)] + [0.0]
    k, b0 = _scale(min(pts), max(pts), left, width - right)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="forest plot of lifts"><style>text{{font:12px sans-serif}}</style>']  # fmt: skip
    x0 = k * 0 + b0
    out.append(
        f'<line x1="{x0:.1f}" y1="{top - 10}" x2="{x0:.1f}" y2="{height - 24}" stroke="#888" stroke-dasharray="4 3"/>'
    )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="8" y="{y + 4:.1f}">{escape(r.label)}</text>')
        if not _finite(r.value, r.low, r.high):
            out.append(f'<text x="{left}" y="{y + 4:.1f}" fill="#888">not estimable</text>')
            continue
        color = TONE_COLOR[r.tone]
        xl, xh, xv = k * r.low + b0, k * r.high + b0, k * r.value + b0
        out.append(
            f'<line x1="{xl:.1f}" y1="{y:.1f}" x2="{xh:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<circle cx="{xv:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>')
        out.append(
            f'<text x="{width - right + 4}" y="{y + 4:.1f}" font-size="11">{r.value:+.1%}</text>'
        )
    for tick in _ticks(min(pts), max(pts)):
        x = k * tick + b0
        out.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" fill="#555">{tick:+.0%}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    width: int = 760,
    height: int = 220,
) -> str:
    """Lines (with shaded intervals) of (value, low, high) per label; y axis in percent."""
    left, right, top, bottom = 50, 40, LEGEND_H + 8, 30
    vals = [x for s in series.values() for p in s for x in p if _finite(x)] + [0.0]
    ky, by = _scale(min(vals), max(vals), height - bottom, top)
    n = max(1, len(labels) - 1)

    def xpos(i: int) -> float:
        return left + (width - left - right) * (i / n if len(labels) > 1 else 0.5)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="cumulative lift over time"><style>text{{font:11px sans-serif}}</style>']  # fmt: skip
    y0 = by
    out.append(
        f'<line x1="{left}" y1="{y0:.1f}" x2="{width - right}" y2="{y0:.1f}" stroke="#888" stroke-dasharray="4 3"/>'
    )
    for tick in _ticks(min(vals), max(vals)):
        out.append(
            f'<text x="{left - 6}" y="{ky * tick + by + 4:.1f}" text-anchor="end" fill="#555">{tick:+.0%}</text>'
        )
    for i, lab in enumerate(labels):
        if len(labels) <= 10 or i % math.ceil(len(labels) / 10) == 0:
            out.append(
                f'<text x="{xpos(i):.1f}" y="{height - 8}" text-anchor="middle" fill="#555">{escape(lab)}</text>'
            )
    for c, pts in enumerate(series.values()):
        color = PALETTE[c % len(PALETTE)]
        ok = [(i, p) for i, p in enumerate(pts) if _finite(*p)]
        if not ok:
            continue
        band = [f"{xpos(i):.1f},{ky * p[2] + by:.1f}" for i, p in ok]
        band += [f"{xpos(i):.1f},{ky * p[1] + by:.1f}" for i, p in reversed(ok)]
        out.append(f'<polygon points="{" ".join(band)}" fill="{color}" fill-opacity="0.15"/>')
        line = " ".join(f"{xpos(i):.1f},{ky * p[0] + by:.1f}" for i, p in ok)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
    out.append(_legend(list(series), left))
    out.append("</svg>")
    return "".join(out)


LEGEND_H = 16  # the strip above the plot area that holds the legend


def _legend(names: Sequence[str], left: float) -> str:
    """Swatches and names in one row in the strip above the plot area (y < LEGEND_H)."""
    out = ['<g class="legend">']
    x = left
    for c, name in enumerate(names):
        color = PALETTE[c % len(PALETTE)]
        out.append(
            f'<rect class="swatch" x="{x:.1f}" y="3" width="10" height="10" fill="{color}"/>'
        )
        out.append(f'<text x="{x + 14:.1f}" y="12" fill="{color}">{escape(name)}</text>')
        x += 14 + 7 * len(name) + 18
    out.append("</g>")
    return "".join(out)


def bar_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[int]], width: int = 760, height: int = 200
) -> str:
    """Grouped bars: one group per label, one bar per series."""
    left, right, top, bottom = 50, 16, LEGEND_H + 8, 30
    top_v = max([v for s in series.values() for v in s] + [1])
    group_w = (width - left - right) / max(1, len(labels))
    bar_w = max(1.0, group_w * 0.8 / max(1, len(series)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="units per variant per day"><style>text{{font:11px sans-serif}}</style>']  # fmt: skip
    out.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="#555">{top_v}</text>')
    out.append(
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>'
    )
    for c, (name, vals) in enumerate(series.items()):
        color = PALETTE[c % len(PALETTE)]
        for i, v in enumerate(vals):
            h = (height - top - bottom) * v / top_v
            x = left + group_w * i + group_w * 0.1 + bar_w * c
            out.append(
                f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}"><title>{escape(name)} {escape(labels[i])}: {v}</title></rect>'
            )
    out.append(_legend(list(series), left))
    for i, lab in enumerate(labels):
        if len(labels) <= 10 or i % math.ceil(len(labels) / 10) == 0:
            out.append(
                f'<text x="{left + group_w * (i + 0.5):.1f}" y="{height - 8}" text-anchor="middle" fill="#555">{escape(lab)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
