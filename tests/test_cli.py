"""The ``abgate`` console script itself: --version, and PORT for Cloud Run."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from abgate.cli import app
from experiments.settings import Settings


def test_version_prints_the_installed_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"abgate {version('abgate')}"


def test_port_comes_from_cloud_runs_port_unless_abgate_port_is_set(monkeypatch):
    monkeypatch.delenv("ABGATE_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert Settings().port == 8000
    monkeypatch.setenv("PORT", "8080")
    assert Settings().port == 8080
    monkeypatch.setenv("ABGATE_PORT", "9000")
    assert Settings().port == 9000
    assert Settings(port=7000).port == 7000  # --port on the command line wins over both
