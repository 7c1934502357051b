"""Every command's --help reads whole at 80 columns: nothing cut, nothing re-wrapped mid-line."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from abgate.cli import app

WIDTH = 80
BOX = re.compile(r"[│╭╮╰╯─┃┏┓┗┛━]")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group of the tree, with its path below ``abgate``."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"}, terminal_width=WIDTH
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_is_walked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"serve", "batch load", "experiments surfaces apply", "registry promote"} <= names


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(path) or "abgate" for path, _ in COMMANDS]
)
def test_help_fits_80_columns_without_cutting_a_word(path: tuple[str, ...], command: Any) -> None:
    text = _help(path)
    where = f"abgate {' '.join(path)} --help"
    assert "…" not in text, f"{where} cuts text at {WIDTH} columns:\n{text}"
    assert all(len(line) <= WIDTH for line in text.splitlines()), f"{where} is wider than {WIDTH}"
    words = set(BOX.sub(" ", text).split())
    for param in command.params:
        for word in (getattr(param, "help", None) or "").split():
            assert word in words, f"{where}: {param.name}'s help lost {word!r}:\n{text}"
    # Typer keeps the single line breaks of a docstring's later paragraphs: a line longer than
    # the panel is broken again, leaving a stub. Each source line must come out whole.
    lines = {line.strip() for line in text.splitlines()}
    _, *paragraphs = inspect.cleandoc(command.help or "").partition("\f")[0].split("\n\n")
    for paragraph in paragraphs:
        for line in paragraph.splitlines():
            assert line.strip() in lines, f"{where} re-wraps the line {line.strip()!r}"
