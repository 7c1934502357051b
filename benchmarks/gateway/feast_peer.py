"""Feast's Python feature server as a benchmark peer (docs/benchmarks.md says how it is set up).

Feast lives in its own virtual environment (``/tmp/feastpeer`` by default), never in the
project's: this module only runs its ``pip``, ``python`` and ``feast`` executables.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = "abgatebenchpeer"  # Redis keys end with it: cleanup scans for ``*PROJECT``

_DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
source = FileSource(path="{parquet}", timestamp_field="event_timestamp")
recs = FeatureView(
    name="recs",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[Field(name="items", dtype=String)],
    source=source,
    online=True,
)
"""

# Runs inside the Feast venv: JSON Lines of {unit_id, items} -> parquet of (user_id, items JSON).
_TO_PARQUET = """\
import json, sys
from datetime import datetime, timezone
import pyarrow as pa, pyarrow.parquet as pq
users, items = [], []
with open(sys.argv[1]) as f:
    for line in f:
        row = json.loads(line)
        if row["unit_id"] == "__default__":
            continue
        users.append(row["unit_id"])
        items.append(json.dumps(row["items"], separators=(",", ":")))
ts = [datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(users)
pq.write_table(pa.table({"user_id": users, "items": items, "event_timestamp": ts}), sys.argv[2])
print(len(users))
"""


def ensure_venv(venv: Path) -> Path:
    """Create ``venv`` with ``feast[redis]`` unless it already has it; return its bin folder."""
    bin_dir = venv / "bin"
    if (bin_dir / "feast").exists():
        return bin_dir
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(bin_dir / "pip"), "install", "-q", "feast[redis]"], check=True)
    return bin_dir


def setup_repo(bin_dir: Path, repo: Path, jsonl: Path, redis_hostport: str, redis_db: int) -> None:
    """Write the feature repository, ``feast apply`` and materialize the lists into Redis."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "data").mkdir(exist_ok=True)
    parquet = repo / "data" / "recs.parquet"
    subprocess.run(
        [str(bin_dir / "python"), "-c", _TO_PARQUET, str(jsonl), str(parquet)],
        check=True,
        capture_output=True,
    )
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
            project: {PROJECT}
            provider: local
            registry: data/registry.db
            online_store: {{type: redis, connection_string: "{redis_hostport},db={redis_db}"}}
            offline_store: {{type: file}}
            entity_key_serialization_version: 3
            """)
    )
    (repo / "definitions.py").write_text(_DEFINITIONS.format(parquet=parquet))
    feast = str(bin_dir / "feast")
    for args in (["apply"], ["materialize", "2020-01-01T00:00:00", "2030-01-01T00:00:00"]):
        subprocess.run([feast, *args], cwd=repo, check=True, capture_output=True)


def serve_command(bin_dir: Path, port: int) -> list[str]:
    """``feast serve`` as FEAST.md says: one worker, no access log, never recycled."""
    return [
        str(bin_dir / "feast"),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--max-requests",
        "0",
    ]
