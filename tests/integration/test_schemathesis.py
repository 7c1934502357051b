"""schemathesis, every check, against a live gateway (uvicorn, real Postgres and Redis).

Bounded: 100 examples per operation and a fixed seed (a failure reproduces), under a minute on
a laptop. The JSON report gives the case count, printed for the record.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import orjson
import pytest

from tests.e2e.helpers import serving
from tests.gateway.helpers import load_demo_data, settings_for, write_config

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 100
SEED = 20261127


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    return found


async def test_schemathesis_finds_no_failure_of_any_check(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    settings = settings_for(
        pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, api_tokens="tok"
    )
    report = tmp_path / "schemathesis.json"
    async with serving(settings) as url:
        proc = await asyncio.create_subprocess_exec(
            _schemathesis(),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--header",
            "Authorization: Bearer tok",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(SEED),
            # One worker: schemathesis' workers are threads, and hypothesis describes strategies
            # with ast.parse, which on CPython 3.11 races between threads ("SystemError: AST
            # constructor recursion depth mismatch", python/cpython#106905): 1 run in ~30 failed.
            "--workers",
            "1",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    text = out.decode(errors="replace")
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {cases['with_failures']} with failures")
    # The errors (not failures: a network error, a schema or generation error) and the end of
    # schemathesis' own output, so that a red run says why.
    why = orjson.dumps({"errors": result["errors"]}).decode()[:4000] + "\n" + text[-6000:]
    assert proc.returncode == 0, why
    assert result["failures"] == [] and result["errors"] == [], why
    assert result["operations"]["tested"] == result["operations"]["total"] >= 6
    assert cases["generated"] > 300
