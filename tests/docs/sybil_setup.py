"""The Sybil configuration that runs README.md and docs/*.md (see tests/docs/shell.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.docs.shell import (
    ROOT,
    Shell,
    console_commands,
    for_docs_port,
    output_matches,
    setup_document,
    teardown_document,
)


def _shell(example: Example) -> tuple[Shell, int]:
    namespace = example.namespace
    if "_docs_unavailable" in namespace:
        pytest.skip(namespace["_docs_unavailable"])
    return namespace["_docs_shell"], namespace["_docs_port"]


def _label(example: Example) -> str:
    return f"the block at {Path(example.path).relative_to(ROOT)}:{example.line}"


def evaluate_sh(example: Example) -> None:
    """A shell block: every command must succeed."""
    shell, port = _shell(example)
    label = _label(example)
    rc, output = shell.run(for_docs_port(example.parsed, port), errexit=True, label=label)
    assert rc == 0, f"{label} exited {rc}:\n{output}"


def evaluate_console(example: Example) -> None:
    """A console block: each command's output must be what the docs show."""
    shell, port = _shell(example)
    label = _label(example)
    for command, expected in console_commands(example.parsed):
        rc, output = shell.run(for_docs_port(command, port), errexit=False, label=label)
        assert output_matches(expected, output), (
            f"{label}: `{command}` (exit {rc}) printed\n{output}\n--- the docs show ---\n{expected}"
        )


class ExampleFilesParser(CodeBlockParser):
    """YAML blocks that quote files of examples/ (a ``# examples/...`` line before each)."""

    def __init__(self) -> None:
        super().__init__("yaml", evaluate_example_files)

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            if str(region.parsed).startswith("# examples/"):
                yield region


def evaluate_example_files(example: Example) -> None:
    """Each quoted file is, line for line, the file in examples/."""
    sections = re.split(r"^# (examples/\S+)\n", str(example.parsed), flags=re.MULTILINE)
    for name, quoted in zip(sections[1::2], sections[2::2], strict=True):
        actual = (ROOT / name).read_text(encoding="utf-8")
        assert quoted == actual, f"{_label(example)} quotes {name}, which reads:\n{actual}"


DOCS = Sybil(
    parsers=[
        SkipParser(),
        CodeBlockParser("sh", evaluate_sh),
        CodeBlockParser("bash", evaluate_sh),
        CodeBlockParser("console", evaluate_console),
        PythonCodeBlockParser(),
        ExampleFilesParser(),
    ],
    path=str(ROOT),
    patterns=["README.md", "docs/*.md"],
    setup=setup_document,
    teardown=teardown_document,
    name="docs",
)
