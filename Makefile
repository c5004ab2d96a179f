# The front door: `make run` (the daemon on bundled local demo targets) and `make test`.
# Everything lands in .venv so nothing touches the system Python.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so the install re-runs only when a requirements file changes.
$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## run: the daemon on the bundled demo targets (127.0.0.1 only); Ctrl-C stops both.
run: $(VENV)/.run-deps
	$(BIN)/python examples/run_demo.py

## test: lint, type-check and the whole test suite.
test: lint typecheck unit

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

unit: $(VENV)/.test-deps
	$(BIN)/pytest

## bench: the performance benchmark (not part of `make test`): nginx, the blackbox exporter and
## upcheck on 127.0.0.1; writes docs/PERFORMANCE.md after a full run. BENCH_ARGS=--quick etc.
bench: $(VENV)/.test-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-checkov .pytest_cache .mypy_cache .ruff_cache results bench/last-results.json
