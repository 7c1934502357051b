"""The commands' shared runtime: a pool of the settings, errors as one line and an exit code."""

from __future__ import annotations

import pytest
import typer

from abgate.commands import runtime
from batch import LoadError
from experiments import ConfigError, StoreError, StoreUnavailable
from experiments.errors import ConfigIssue
from experiments.settings import Settings


def _exit_code(main: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as exc:
        runtime.run(main)  # type: ignore[arg-type]
    return exc.value.exit_code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (StoreUnavailable("cannot reach Postgres: x"), 3, "error cannot reach Postgres: x"),
        (StoreError("experiment 'e' is running"), 1, "refused experiment 'e' is running"),
        (LoadError("r.csv", 7, "field 'score' is 'x'"), 1, "error r.csv:7: field 'score' is 'x'"),
        (ConfigError([ConfigIssue("e.yaml", "salt", "too short", 3)]), 1, "error e.yaml:3:"),
    ],
)
def test_an_error_of_ours_is_one_line_and_its_exit_code(
    error: Exception, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def main() -> None:
        raise error

    got, err = _exit_code(main, capsys)
    assert got == code
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_keeps_its_traceback() -> None:
    async def main() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        runtime.run(main)


def test_a_command_gets_a_migrated_pool_on_its_schema(pg_dsn: str, schema: str) -> None:
    settings = Settings(postgres_dsn=pg_dsn, postgres_schema=schema)

    async def main() -> str:
        async with runtime.postgres_pool(settings) as pool:
            return str(await pool.fetchval("SELECT current_schema()"))

    assert runtime.run(main) == schema


def test_an_unreachable_postgres_exits_3_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(postgres_dsn="postgresql://postgres@127.0.0.1:1/x", postgres_schema="x")

    async def main() -> None:
        async with runtime.postgres_pool(settings):
            pass

    code, err = _exit_code(main, capsys)
    assert code == 3 and err.startswith("error cannot reach Postgres: ConnectionRefusedError")


def test_the_author_is_the_option_else_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "someone")
    monkeypatch.setenv("LOGNAME", "someone")
    assert runtime.author("ana") == "ana"
    assert runtime.author(None) == "someone"
