"""The docs stay true: every setting documented, every skipped example explained.

The examples themselves run from the root conftest.py (tests/docs/).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OPERATORS = ROOT / "docs" / "operators.md"


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


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_skipped_block_says_why() -> None:
    # Sybil's bare `skip: next` (no reason) passes the next block without running it: a silent
    # skip. Every skip in the docs must carry its reason, which the test report then shows.
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "<!-- skip:" in line:
                assert re.fullmatch(r'\s*<!-- skip: next "[^"]{10,}" -->', line), (
                    f'{path.name}:{number}: a skip needs a reason: <!-- skip: next "why" -->'
                )


def test_the_docs_blocks_are_collected_by_the_suite() -> None:
    # make test runs `pytest` with pyproject's testpaths: the docs must be among them, or the
    # root conftest's Sybil collector never sees them.
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert {"README.md", "docs"} <= set(config["tool"]["pytest"]["ini_options"]["testpaths"])
