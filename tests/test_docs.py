"""The operator docs list every setting, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from experiments.settings import Settings

OPERATORS = Path(__file__).resolve().parents[1] / "docs" / "operators.md"


def test_every_setting_has_a_row_in_the_operators_table() -> None:
    doc = OPERATORS.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(ABGATE_[A-Z0-9_]+)` \|", doc, flags=re.MULTILINE))
    fields = {f"ABGATE_{name.upper()}" for name in Settings.model_fields}
    assert fields - rows == set(), "settings missing from docs/operators.md"
    assert rows - fields == set(), "docs/operators.md documents settings that do not exist"
