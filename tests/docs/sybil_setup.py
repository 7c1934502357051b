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


# A Python block whose first line is ``# path/to/file.py`` shows a file of the reader's project.
PROJECT_FILE = re.compile(r"# ([\w./-]+\.py)\n")


class ProjectFileParser(CodeBlockParser):
    """Python blocks that show a file of the reader's project (``# shop/views.py`` as their
    first line): written to the document's folder, where later blocks import or run them,
    instead of being executed where they stand."""

    def __init__(self) -> None:
        super().__init__("python", evaluate_project_file)

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            if PROJECT_FILE.match(str(region.parsed)):
                yield region


class PythonSnippetParser(PythonCodeBlockParser):
    """Every other Python block: run in the document's namespace (Sybil's evaluator)."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            if not PROJECT_FILE.match(str(region.parsed)):
                yield region


def evaluate_project_file(example: Example) -> None:
    """Write the block to the path its first line names, under the document's folder."""
    if "_docs_unavailable" in example.namespace:
        pytest.skip(example.namespace["_docs_unavailable"])
    source = str(example.parsed)
    match = PROJECT_FILE.match(source)
    assert match is not None
    scratch: Path = example.namespace["_docs_scratch"]
    path = (scratch / match.group(1)).resolve()
    assert path.is_relative_to(scratch.resolve()), f"{_label(example)} names a file outside"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


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
        PythonSnippetParser(),
        ProjectFileParser(),
        ExampleFilesParser(),
    ],
    path=str(ROOT),
    patterns=["README.md", "docs/*.md"],
    setup=setup_document,
    teardown=teardown_document,
    name="docs",
)
