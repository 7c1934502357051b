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

demo: venv
	$(BIN)/abgate demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy experiments analysis

test: venv lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .abgate
