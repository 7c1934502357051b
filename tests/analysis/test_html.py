"""The HTML report: self-contained, with its charts, and rendered by a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from analysis import ReportOptions, build_report, render_html
from analysis.svg import LEGEND_H, bar_chart, line_chart
from tests.analysis.analysis_testkit import (
    EXPERIMENT_YAML,
    T0,
    ArchiveWriter,
    experiment,
    simulate_archive,
)

OPTIONS = ReportOptions(
    cuped_window=timedelta(days=7), sequential_tau=0.1, power=0.8, target_mde=0.02
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = simulate_archive(
        tmp_path_factory.mktemp("arch"),
        units=1500,
        rates={"control": 0.1, "treatment": 0.14},
        days=5,
    )
    return render_html(build_report(experiment(), root))


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!doctype html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no external resource"
    assert "<script" not in page


@pytest.fixture(scope="module")
def full_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    """A page with every option on, and the JSON of the same report."""
    root = simulate_archive(
        tmp_path_factory.mktemp("arch"),
        units=1500,
        rates={"control": 0.1, "treatment": 0.2},
        days=5,
    )
    rep = build_report(
        experiment(),
        root,
        options=OPTIONS,
        since=T0 - timedelta(days=1),
        until=T0 + timedelta(days=9),
    )
    return render_html(rep), rep.to_dict()


def test_the_verdict_comes_first(full_page: tuple[str, dict[str, object]]) -> None:
    html, d = full_page
    verdict = d["verdict"]
    assert isinstance(verdict, dict) and verdict["decision"] == "ship"
    i = html.index('id="verdict"')
    assert i < html.index("<h2>") and 'class="verdict ship"' in html
    assert "Verdict: Ship" in html and "treatment beats control on conversion" in html


def test_power_and_sequential_columns_are_shown(
    full_page: tuple[str, dict[str, object]],
) -> None:
    html, d = full_page
    metrics = d["metrics"]
    assert isinstance(metrics, list)
    assert html.count("<th>p (sequential)</th>") == 3 and html.count("<th>MDE</th>") == 3
    assert html.count("<th>days to MDE 2.0%</th>") == 3
    c = metrics[0]["comparisons"][0]
    assert f"<td>{c['mde']:.2%}</td>" in html
    assert f"<td>{format(c['days_to_target'], '.1f')}</td>" in html


def test_metadata_names_time_window_source_version_and_cuped_reduction(
    full_page: tuple[str, dict[str, object]],
) -> None:
    html, d = full_page
    assert "<th>generated at</th>" in html
    assert "2026-11-19T09:00:00+00:00 to 2026-11-29T09:00:00+00:00" in html
    assert "<th>source</th><td>" in html and "arch" in html
    assert "unknown (read from a file)" in html
    metrics = d["metrics"]
    assert isinstance(metrics, list)
    vr = metrics[1]["cuped_variance_reduction"]
    assert vr is not None
    assert f"<th>CUPED variance reduction, revenue</th><td>{vr * 100:.1f}%</td>" in html


def _section(page: str, start: str) -> str:
    i = page.index(start)
    return page[i : page.index("</table>", i)]


DECREASE_YAML = EXPERIMENT_YAML.replace(
    "{name: conversion, kind: proportion, outcome: purchase}",
    "{name: conversion, kind: proportion, outcome: purchase, direction: decrease}",
)


def test_a_lift_is_green_only_in_the_good_direction(tmp_path: Path) -> None:
    root = simulate_archive(tmp_path, units=3000, rates={"control": 0.1, "treatment": 0.2})
    up_good = render_html(build_report(experiment(), root))
    up_bad = render_html(build_report(experiment(DECREASE_YAML), root))
    # the conversion table: lift up 2x, interval far from zero
    good_table, bad_table = (_section(p, "<h3>conversion") for p in (up_good, up_bad))
    assert re.search(r'<td><span class="good">\+\d+\.\d+%</span></td>', good_table)
    assert "good" not in bad_table
    assert re.search(r'<td><span class="bad">\+\d+\.\d+%</span></td>', bad_table)
    # the forest plot's conversion point: green vs red
    assert '<circle cx="' in up_good
    good_dot = re.findall(r'<circle [^>]*fill="(#[0-9a-f]+)"', up_good)[0]
    bad_dot = re.findall(r'<circle [^>]*fill="(#[0-9a-f]+)"', up_bad)[0]
    assert (good_dot, bad_dot) == ("#1a7f37", "#cf222e")


def test_legends_sit_above_the_plotted_data() -> None:
    bars = bar_chart(
        ["d1", "d2"], {"control": [500, 500], "treatment-with-a-long-name": [480, 510]}
    )
    bar_tops = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"[^>]*><title>', bars)]
    assert len(bar_tops) == 4 and min(bar_tops) >= LEGEND_H
    legend = bars[bars.index('<g class="legend">') : bars.index("</g>")]
    assert all(float(y) <= LEGEND_H for y in re.findall(r' y="([\d.]+)"', legend))
    assert all(
        float(y) + 10 <= LEGEND_H
        for y in re.findall(r'class="swatch" x="[\d.]+" y="([\d.]+)"', legend)
    )
    lines = line_chart(
        ["d1", "d2", "d3"], {"treatment": [(0.1, 0.0, 0.2), (0.12, 0.05, 0.2), (0.5, 0.4, 0.6)]}
    )
    ys = [
        float(p.split(",")[1])
        for p in re.findall(r"[\d.]+,[\d.]+", lines.split("<polygon points=")[1].split('"')[1])
    ]
    assert min(ys) >= LEGEND_H


def test_page_has_summary_srm_forest_plot_time_series_and_daily_units(page: str) -> None:
    assert "home-recs-demo" in page and "SRM check passed" in page
    assert 'aria-label="forest plot of lifts"' in page
    assert page.count('aria-label="cumulative lift over time"') == 3  # one per metric
    assert 'aria-label="units per variant per day"' in page
    # five enrolment days -> five bars per variant
    assert len(re.findall(r"<rect [^>]*><title>control 2026-11-2\d", page)) == 5
    assert page.count("<circle") == 3  # a lift point per metric x treatment


def test_srm_alarm_banner(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(300):
        w.exposure(f"c{i}", "control", T0)
    w.exposure("t0", "treatment", T0)
    html = render_html(build_report(experiment(), w.write()))
    assert 'class="alarm"' in html and "Sample ratio mismatch" in html


def test_user_text_is_escaped(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    w.exposure("u1", "<script>x</script>", T0)
    assert "<script>x" not in render_html(build_report(experiment(), w.write()))


CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


def _screenshot(page: str, tmp_path: Path) -> bytes:
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    png = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,1600", html.as_uri()],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    return png.read_bytes()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")
def test_headless_chromium_renders_the_page(page: str, tmp_path: Path) -> None:
    data = _screenshot(page, tmp_path)
    assert (
        data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    )  # a blank page compresses to ~5 KB


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")
def test_headless_chromium_shows_the_verdict_banner_at_the_top(
    full_page: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    image = pytest.importorskip("PIL.Image")
    import io

    shot = image.open(io.BytesIO(_screenshot(full_page[0], tmp_path))).convert("RGB")
    green = (0xDA, 0xFB, 0xE1)  # .verdict.ship background
    rows = [y for y in range(0, 400) if shot.getpixel((600, y)) == green]
    assert rows, "no ship-green verdict banner in the top 400 px"
    assert min(rows) < 150  # right under the title
