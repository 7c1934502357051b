"""``ModelRegistry`` is a pure Protocol, and ``MlflowRegistry`` implements every member of it."""

from __future__ import annotations

import ast
import inspect

import pytest

pytest.importorskip("mlflow")


def test_the_protocol_declares_and_never_implements() -> None:
    # Its load_pyfunc once carried MlflowRegistry's body, calling a self._call the Protocol
    # does not have (mypy --strict registry found it): an explicit subclass broke at runtime.
    from registry import ModelRegistry

    (cls,) = ast.parse(inspect.getsource(ModelRegistry)).body
    assert isinstance(cls, ast.ClassDef)
    methods = [f for f in cls.body if isinstance(f, ast.AsyncFunctionDef | ast.FunctionDef)]
    assert methods
    for f in methods:
        _docstring, *rest = f.body
        assert [ast.dump(s) for s in rest] == [ast.dump(ast.Expr(ast.Constant(...)))], f.name


def test_mlflow_registry_implements_every_member() -> None:
    from registry import MlflowRegistry, ModelRegistry

    members = {n for n, v in vars(ModelRegistry).items() if inspect.iscoroutinefunction(v)}
    assert members and members <= set(vars(MlflowRegistry)), members - set(vars(MlflowRegistry))
