"""The HTML report: self-contained, with its charts, and rendered by a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis import build_report, render_html
from tests.analysis.analysis_testkit import T0, ArchiveWriter, experiment, simulate_archive


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


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")
def test_headless_chromium_renders_the_page(page: str, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    png = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,1600", html.as_uri()],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    data = png.read_bytes()
    assert (
        data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    )  # a blank page compresses to ~5 KB
