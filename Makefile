# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= embedded,analysis,gcp,dev,demo,batch,mlflow,reports

.PHONY: demo test test-quick lint venv clean deploy-tools

$(BIN)/abgate: pyproject.toml setup.py gateway/_exposure.c experiments/_bucket.c
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

# The deployment tests' tools (tests/deploy): Airflow and checkov in venvs of their own (their
# pins clash with ours), podman + mmdebstrap from Debian for the image test, and chromium for the
# report page rendered headless (tests/analysis/test_html.py). Each is skipped
# by its test when absent; without root or apt-get the Debian tools are left out.
$(VENV)-airflow/bin/airflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)-airflow
	$(VENV)-airflow/bin/pip install --quiet -e ".[airflow]"
	touch $@

$(VENV)-checkov/bin/checkov:
	$(PYTHON) -m venv $(VENV)-checkov
	$(VENV)-checkov/bin/pip install --quiet checkov
	touch $@

deploy-tools: $(VENV)-airflow/bin/airflow $(VENV)-checkov/bin/checkov
	@if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null \
	    || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      podman buildah mmdebstrap runc uidmap slirp4netns chromium >/dev/null; \
	  else echo "deploy-tools: no root/apt-get: the image and headless-Chromium tests will be skipped"; fi; \
	fi

demo: venv
	$(BIN)/abgate demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy experiments analysis registry gateway abgate batch

test: venv lint $(VENV)/bqemulator/bin/bqemulator $(VENV)/.spark-installed deploy-tools
	$(BIN)/pytest -q

# Lint and every test but the slow (simulations, outages, served processes, e2e) and deploy
# ones: the loop while working. `make test` before merging.
test-quick: venv lint
	$(BIN)/pytest -q -m "not slow and not deploy"

clean:
	rm -rf $(VENV) $(VENV)-airflow $(VENV)-checkov .abgate
