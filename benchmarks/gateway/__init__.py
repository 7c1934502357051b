"""The gateway benchmark (``python -m benchmarks.gateway``), its bare reference apps
(``ref_app``, ``ref_pg_app``), its data, wrk scripts (``lua/``), servers and profile summary."""
