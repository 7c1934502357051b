"""The dependency rules of DESIGN.md, and what each package exports, checked on the source."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"experiments", "registry", "batch", "gateway", "analysis", "loadtests", "abgate"}
ALLOWED = {
    "experiments": set(),
    "registry": {"experiments"},
    "batch": {"experiments", "registry"},
    "gateway": {"experiments", "registry"},
    "analysis": {"experiments"},
    "loadtests": set(),
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_design_allows(package: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            offences.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offences, "\n".join(offences)


def test_gateway_import_path_stays_light() -> None:
    code = (
        "import sys, gateway, gateway.app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'mlflow', 'duckdb', 'scipy', 'pandas', 'sklearn'} or m.startswith('google.cloud'))\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("package", ["experiments", "gateway", "batch", "analysis", "loadtests"])
def test_package_exports_exactly_its_all(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names missing attributes: {missing}"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(package + ".")
    }
    assert public <= exported, (
        f"{package} exposes names not in __all__: {sorted(public - exported)}"
    )


def _module_imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``), deferred imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _core_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "experiments").glob("*.py"))


def test_the_experiments_core_imports_neither_its_store_nor_a_database_driver() -> None:
    offences = []
    for path in _core_modules():
        bad = sorted(
            m
            for m in _module_imports(path)
            if m.split(".")[0] == "asyncpg" or m.startswith("experiments.store")
        )
        if bad:
            offences.append(f"{path.relative_to(ROOT)} imports {', '.join(bad)}")
    assert not offences, "\n".join(offences)


def test_importing_the_experiments_core_loads_no_database_driver() -> None:
    code = (
        "import sys, experiments\n"
        "print(','.join(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'asyncpg' or m.startswith('experiments.store'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


def test_experiments_modules_import_one_another_without_cycles() -> None:
    paths = sorted((ROOT / "experiments").rglob("*.py"))
    names = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in paths
    }
    graph = {
        name: {m for m in _module_imports(path) if m in names and m != name}
        for name, path in names.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
