"""The operator docs list every setting, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from experiments.settings import Settings

OPERATORS = Path(__file__).resolve().parents[1] / "docs" / "operators.md"


def _variable(name: str, field: FieldInfo) -> str:
    """The environment variable of a setting: ABGATE_<NAME>, or its alias (another tool's)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    return alias.upper() if isinstance(alias, str) else f"ABGATE_{name.upper()}"


def test_every_setting_has_a_row_in_the_operators_table() -> None:
    doc = OPERATORS.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", doc, flags=re.MULTILINE))
    fields = {_variable(name, field) for name, field in Settings.model_fields.items()}
    assert fields - rows == set(), "settings missing from docs/operators.md"
    ours = {row for row in rows if row.startswith("ABGATE_")}
    assert ours - fields == set(), "docs/operators.md documents settings that do not exist"
