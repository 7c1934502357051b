#!/bin/sh
# Install the BigQuery emulator that tests/analysis/test_bigquery.py runs, in its own venv
# (bqemulator pins sqlglot<30.12 and its own duckdb; abgate's venv keeps newer ones).
# Usage: sh tests/analysis/setup_bqemulator.sh [VENV]   (default: .venv/bqemulator)
# The tests find it there, or at $ABGATE_BQEMULATOR (path of the bqemulator executable).
set -eu
VENV=${1:-.venv/bqemulator}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" numpy
# bqemulator loads DuckDB's spatial extension at start and would download it; install the
# copy shipped by duckdb-extension-spatial into DuckDB's extension folder instead.
"$VENV/bin/python" - <<'PY'
import pathlib

import duckdb
import duckdb_extension_spatial

pkg = pathlib.Path(duckdb_extension_spatial.__file__).parent
ext = next(pkg.glob(f"extensions/v{duckdb.__version__}/spatial.duckdb_extension"))
con = duckdb.connect()
con.execute(f"INSTALL '{ext}'")
con.execute("LOAD spatial")
print(f"bqemulator ready: spatial extension {ext.parent.name} installed")
PY
