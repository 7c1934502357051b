"""Benchmark of the report against the bare DuckDB scan and a pandas implementation.

Run ``python -m benchmarks.report --help``. Not a test: it prints a table of wall times, peak
memory (RSS of each contender, each run in its own process) and ratios.
"""
