"""Benchmark scripts and the bare reference app: run from a clone, never shipped in the wheel.

Run from the repository root (``python -m benchmarks.NAME --help``); docs/benchmarks.md says
what each measures and holds the figures:

- ``benchmarks.gateway``: the gateway against the bare stack (``gateway/ref_app.py``) and Feast;
- ``benchmarks.batch_load``: loading and warm-up against the machine's physical limits;
- ``benchmarks.report``: the experiment report against a bare DuckDB scan and pandas;
- ``benchmarks.redis_cost``, ``benchmarks.ratelimit_cost``: micro-costs behind design choices;
- ``benchmarks.slow_clients``: slow and greedy clients against a running gateway;
- ``benchmarks/locustfile.py``: ``abgate loadtest``'s scenario for teams that run Locust.
"""
