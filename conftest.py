"""Collect README.md and docs/*.md as tests: their shell, console and Python blocks run.

The machinery is in tests/docs/ (tests/docs/shell.py says what runs and how).
"""

from tests.docs.sybil_setup import DOCS

pytest_collect_file = DOCS.pytest()
