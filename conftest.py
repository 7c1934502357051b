"""Collect README.md and docs/*.md as tests: their shell, console and Python blocks run.

The machinery is in tests/docs/ (tests/docs/shell.py says what runs and how).
"""

import pytest

from tests.docs.sybil_setup import DOCS

pytest_collect_file = DOCS.pytest()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The docs' blocks start gateways and run the tour (1-2 minutes): ``slow``, so that
    ``make test-quick`` leaves them to ``make test``."""
    for item in items:
        if item.path.suffix == ".md":
            item.add_marker(pytest.mark.slow)
