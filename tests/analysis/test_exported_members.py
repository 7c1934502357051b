"""The public API of the analysis package is exactly what it re-exports."""

from __future__ import annotations

import ast
from pathlib import Path

import analysis


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(analysis) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(analysis, n)).__name__ == "module"}
    assert set(analysis.__all__) == public - modules
    for name in ("build_report", "render_table", "render_html", "Report"):
        assert name in analysis.__all__


def test_analysis_imports_only_experiments_of_ours() -> None:
    ours = {"gateway", "batch", "registry", "loadtests", "abgate"}
    root = Path(analysis.__file__).parent
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & ours, f"{f} imports {names}"
