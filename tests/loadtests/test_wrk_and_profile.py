"""Reading wrk's report and summarising py-spy's collapsed stacks (the benchmark's parsers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.gateway.profile import summarise
from benchmarks.gateway.wrk import parse

WRK_OUTPUT = """\
Running 15s test @ http://127.0.0.1:8001/v1/recommendations
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.95ms   12.10ms 210.00ms   85.00%
    Req/Sec     1.39k   120.00     1.60k    70.00%
  Latency Distribution
     50%   21.95ms
     75%   28.00ms
     90%  850.00us
     99%    1.20s
  20745 requests in 15.00s, 9.10MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1383.00
Transfer/sec:    621.00KB
"""


def test_wrk_report_is_read_with_its_units() -> None:
    r = parse(WRK_OUTPUT)

    assert r.rps == 1383.0
    assert r.requests == 20745
    assert r.p50_ms == pytest.approx(21.95)
    assert r.p90_ms == pytest.approx(0.85)
    assert r.p99_ms == pytest.approx(1200.0)
    assert r.non_2xx == 12
    assert r.socket_errors == 3


def test_output_without_a_report_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot read wrk output"):
        parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_profile_shares_by_layer_function_and_request_path(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (asyncio/runners.py:1);Starlette.__call__ (starlette/applications.py:1);"
        "TieredLookup.lookup (gateway/lookup.py:60);Redis.execute_command (redis/asyncio/client.py:1) 3\n"
        "run (asyncio/runners.py:1);Starlette.__call__ (starlette/applications.py:1);"
        "TieredLookup.lookup (gateway/lookup.py:61) 1\n"
    )

    s = summarise(raw)

    assert dict(s["layer"]) == {"redis": 0.75, "gateway code": 0.25}
    assert dict(s["self"])["TieredLookup.lookup (gateway/lookup.py)"] == 0.25
    inclusive = dict(s["inclusive"])
    assert inclusive["whole ASGI app (Starlette.__call__ and below)"] == 1.0
    assert inclusive["TieredLookup.lookup (gateway/lookup.py)"] == 1.0
