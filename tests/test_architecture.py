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


def module_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, anywhere in the file (a deferred import
    inside a function is still an edge: it only hides a cycle)."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for a in node.names:  # ``from pkg import module`` names a module
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {m for m in edges if m in modules and m != package and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            cycle = visit(nxt, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# experiments/, batch/ and analysis/ still hold a cycle each (issue 13 removes them): add each
# package here once it has none.
@pytest.mark.parametrize("package", ["gateway", "registry", "loadtests", "abgate"])
def test_modules_of_a_package_import_each_other_without_cycles(package: str) -> None:
    cycle = find_cycle(module_graph(package))
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle or [])}"
