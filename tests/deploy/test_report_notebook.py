"""analysis/notebooks/experiment_report.ipynb executed by papermill on a synthetic archive:
its report and the figures it shows equal `abgate report --format json` for the same window.

papermill and ipykernel come with the ``reports`` extra; skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analysis.analysis_testkit import EXPERIMENT_YAML, simulate_archive

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "analysis/notebooks/experiment_report.ipynb"

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(
        not (importlib.util.find_spec("papermill") and importlib.util.find_spec("ipykernel")),
        reason="papermill and ipykernel are not installed (the reports extra)",
    ),
]

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_PLATFORM_DIRS": "1"}


def _cli_report(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "abgate", "report", *args, "--format", "json"],
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    )
    return json.loads(done.stdout)


def _same(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative: `abgate report` itself differs in the last bits from
    run to run (DuckDB sums in parallel, in no fixed order)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-15)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _outputs(nb: dict[str, object], tag: str) -> list[dict[str, object]]:
    [cell] = [c for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]
    return cell["outputs"]


def test_notebook_figures_equal_the_json_report_for_the_same_window(tmp_path):
    archive = simulate_archive(
        tmp_path / "archive",
        units=600,
        rates={"control": 0.10, "treatment": 0.14},
        revenue={"control": 10.0, "treatment": 12.0},
        days=3,
        seed=7,
    )
    config = tmp_path / "experiment.yaml"
    config.write_text(EXPERIMENT_YAML)
    since, until = "2026-11-21T00:00:00Z", "2026-11-23T00:00:00Z"  # the last two of three days
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "executed.ipynb"),
            "-p", "config", str(config), "-p", "archive", str(archive),
            "-p", "since", since, "-p", "until", until, "-p", "output_dir", str(out),
        ],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    expected = _cli_report("--config", str(config), "--archive", str(archive),
                           "--since", since, "--until", until)  # fmt: skip
    whole = _cli_report("--config", str(config), "--archive", str(archive))
    assert expected["variants"] != whole["variants"]  # the window matters, so it was passed on

    assert _same(json.loads((out / "report.json").read_text()), expected)
    nb = json.loads((tmp_path / "executed.ipynb").read_text())
    [shown] = [o["data"]["application/json"] for o in _outputs(nb, "figures") if "data" in o
               and "application/json" in o["data"]]  # fmt: skip
    assert shown["variants"] == expected["variants"]
    rows = {(f["metric"], f["variant"]): f for f in shown["figures"]}
    assert len(rows) == sum(len(m["comparisons"]) for m in expected["metrics"]) == 3
    for m in expected["metrics"]:
        for c in m["comparisons"]:
            f = rows[(m["name"], c["variant"])]
            assert _same(f["value"], m["values"][c["variant"]])
            assert _same(f["control_value"], m["values"][expected["control"]])
            assert _same([f["lift"], f["lift_ci"]], [c["lift"], c["lift_ci"]])
            assert _same(
                [f["p_value"], f["p_value_adjusted"]], [c["p_value"], c["p_value_adjusted"]]
            )
    # The plots: inline in the notebook and as a file beside the report.
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    assert (out / "lift.png").stat().st_size > 1000


def test_a_failing_report_fails_the_notebook_with_the_commands_error(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text(EXPERIMENT_YAML)
    done = subprocess.run(
        [
            sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "executed.ipynb"),
            "-p", "config", str(config), "-p", "archive", str(tmp_path / "missing"),
            "-p", "output_dir", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "abgate report failed" in done.stderr and "missing" in done.stderr
