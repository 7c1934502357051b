"""Run a Markdown file's shell blocks as a reader would: one shell session, in order.

Each document gets a scratch folder holding a copy of ``examples/``, one ``bash`` process fed the
blocks in order (so ``export``, ``cd`` and background jobs carry over, as in a terminal), its own
Postgres schema and Redis key prefix on the machine's servers, and its own free port for
``abgate serve``. The blocks keep their text; two things are rewritten on the way in, and only
these: ``localhost:8000`` / ``127.0.0.1:8000`` become the document's port, and after every block
the document's servers, schema, prefix and port are exported again (a block that exports the
docs' usual DSN still talks to the test's servers).

Languages:
- ``sh`` / ``bash``: the block runs with ``set -e``; any failing command fails the example (and
  ends the session: later blocks of the file then fail too, naming the block that broke it).
- ``console``: ``$ command`` lines (a trailing ``\\`` or an open quote continues a command), each followed by the
  output the docs show. The output must match, with ``…`` standing for any text (ids, timings,
  hashes) and whitespace compared loosely (runs of blanks are one, and none is needed next to
  JSON punctuation, so a pretty-printed JSON answer matches the compact one curl prints).
- ``python``: Sybil's own evaluator (a namespace per document); except a block whose first line
  is ``# path/to/file.py``: a file of the reader's project, written to that path in the
  scratch folder for later blocks to import or run (tests/docs/sybil_setup.py).

Skipped blocks carry ``<!-- skip: next "reason" -->`` in the Markdown (Sybil's directive); the
reason is the skip's reason in the test report.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DOCS_PORT = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")
BLOCK_TIMEOUT = 300.0  # seconds one block may take (the tour's longest takes ~30 s)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ShellEnded(Exception):
    """The document's shell exited (a block failed under ``set -e``)."""


class Shell:
    """One ``bash`` session fed blocks through its standard input, like a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str], pinned: dict[str, str]) -> None:
        self.pinned = pinned
        self.token = "__docs_done_" + uuid.uuid4().hex
        self.broken: str | None = None  # the block that ended the session
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its background jobs share its process group: one kill
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name="docs-shell-reader", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, script: str, *, errexit: bool, label: str) -> tuple[int, str]:
        """Run SCRIPT in the session; return its exit status and its output."""
        if self.broken is not None:
            raise ShellEnded(f"the shell session ended at {self.broken}")
        pins = "".join(f"export {k}={_quote(v)}\n" for k, v in self.pinned.items())
        text = (
            ("set -e\n" if errexit else "")
            + script.rstrip("\n")
            + "\n"
            + f"__rc=$?; set +e; {pins}printf '\\n%s %s\\n' {self.token} \"$__rc\"\n"
        )
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.broken = label
            raise ShellEnded(f"the shell session ended before {label}") from None
        out: list[str] = []
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.broken = label
                raise ShellEnded(f"{label} ran longer than {BLOCK_TIMEOUT:.0f} s") from None
            if line is None:
                self.broken = label
                output = "".join(out)
                raise ShellEnded(f"{label} ended the shell (a command failed):\n{output}")
            if line.startswith(self.token):
                output = "".join(out)
                if output.endswith("\n"):
                    output = output[:-1]  # the newline printed before the token
                return int(line.split()[1]), output
            out.append(line)

    def close(self) -> None:
        """End the session and everything it started (its background jobs too)."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("kill $(jobs -p) 2>/dev/null; wait; exit 0\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever the session left behind
        self.proc.wait()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def for_docs_port(text: str, port: int) -> str:
    """The docs' ``localhost:8000`` pointed at this document's gateway port."""
    return DOCS_PORT.sub(lambda m: f"{m.group(1)}:{port}", text)


# ---- console blocks -------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"\s*([{}\[\],:])\s*")


def _loose(text: str) -> str:
    """Whitespace-insensitive form: blank runs become one, none around JSON punctuation."""
    return _PUNCTUATION.sub(r"\1", re.sub(r"\s+", " ", text)).strip()


def output_matches(expected: str, actual: str) -> bool:
    """Whether ACTUAL is what the docs show, ``…`` standing for any text."""
    parts = [re.escape(_loose(part)) for part in _loose(expected).split("…")]
    return re.fullmatch("(?s:.*?)".join(parts), _loose(actual), flags=re.DOTALL) is not None


def _incomplete(command: str) -> bool:
    """Whether the shell would read another line: a trailing backslash or an open quote."""
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command, comments=True)
    except ValueError:  # "No closing quotation"
        return True
    return False


def console_commands(source: str) -> list[tuple[str, str]]:
    """The (command, expected output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = [line[2:]]
            while _incomplete("\n".join(command)) and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            pairs.append(("\n".join(command), []))
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"console block: output before any '$ ' command: {line!r}")
        i += 1
    return [(command, "\n".join(out).strip("\n")) for command, out in pairs]


# ---- one document's world -------------------------------------------------------------------


def _reachable(url: str) -> bool:
    from abgate.embedded import reachable

    return bool(reachable(url))


def setup_document(namespace: dict[str, Any]) -> None:
    """A scratch folder, a schema, a key prefix, a port and a shell for one Markdown file."""
    pg = os.environ.get("ABGATE_TEST_POSTGRES_DSN", DEFAULT_PG)
    redis_url = os.environ.get("ABGATE_TEST_REDIS_URL", DEFAULT_REDIS)
    missing = [url for url in (pg, redis_url) if not _reachable(url)]
    if missing:
        namespace["_docs_unavailable"] = f"no server answers at {', '.join(missing)}"
        return
    unique = uuid.uuid4().hex[:10]
    scratch = Path(tempfile.mkdtemp(prefix="abgate-docs-"))
    shutil.copytree(ROOT / "examples", scratch / "examples")
    port = free_port()
    pinned = {
        "ABGATE_POSTGRES_DSN": pg,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_POSTGRES_SCHEMA": f"docs_{unique}",
        "ABGATE_REDIS_PREFIX": f"abgate-docs:{unique}:",
        "ABGATE_PORT": str(port),
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ABGATE_", "MLFLOW_", "PYTEST_", "COLUMNS", "LINES"))
    }
    env.update(pinned)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),  # this tree's packages, as an editable install would give
        COLUMNS="100",  # Rich renders the same whatever terminal runs the suite
        NO_COLOR="1",
        TERM="dumb",
        PYTHONWARNINGS="ignore",  # a third-party deprecation notice is not the docs' output
    )
    namespace.update(
        _docs_scratch=scratch,
        _docs_port=port,
        _docs_pinned=pinned,
        _docs_shell=Shell(scratch, env, pinned),
    )


def teardown_document(namespace: dict[str, Any]) -> None:
    """Stop the shell and its jobs, drop the schema and the keys, remove the scratch folder."""
    shell: Shell | None = namespace.get("_docs_shell")
    if shell is None:
        return
    shell.close()
    pinned = namespace["_docs_pinned"]
    _drop(pinned)
    shutil.rmtree(namespace["_docs_scratch"], ignore_errors=True)


def _drop(pinned: dict[str, str]) -> None:
    import asyncio

    import asyncpg
    import redis

    async def drop_schema() -> None:
        conn = await asyncpg.connect(pinned["ABGATE_POSTGRES_DSN"])
        try:
            await conn.execute(
                f'DROP SCHEMA IF EXISTS "{pinned["ABGATE_POSTGRES_SCHEMA"]}" CASCADE'
            )
        finally:
            await conn.close()

    asyncio.run(drop_schema())
    client = redis.Redis.from_url(pinned["ABGATE_REDIS_URL"])
    try:
        keys = list(client.scan_iter(match=pinned["ABGATE_REDIS_PREFIX"] + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
