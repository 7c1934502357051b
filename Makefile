# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= embedded,analysis,gcp,dev,demo,batch,mlflow

.PHONY: demo test lint venv clean

$(BIN)/abgate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(BIN)/abgate

venv: $(BIN)/abgate

# The BigQuery emulator the BigQuery-path tests run against (its own venv: it pins old sqlglot).
$(VENV)/bqemulator/bin/bqemulator: tests/analysis/setup_bqemulator.sh
	sh tests/analysis/setup_bqemulator.sh $(VENV)/bqemulator

# pyspark for the Spark test (~320 MB; only `make test` installs it, `make demo` does not).
$(VENV)/.spark-installed: pyproject.toml $(BIN)/abgate
	$(BIN)/pip install --quiet -e ".[$(EXTRAS),spark]"
	touch $@

demo: venv
	$(BIN)/abgate demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy experiments analysis

test: venv lint $(VENV)/bqemulator/bin/bqemulator $(VENV)/.spark-installed
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .abgate
