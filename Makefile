# Every target sets up what it needs: a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint typecheck pytest demo bench bench-quick soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/async-dispatch demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks

# The fleet scenario is left out here: it has its own tests, and its quick run alone takes
# about a minute (`python -m benchmarks --quick --only fleet`).
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --only overhead,memory,saturated,workload,faults,hybrid

soak: $(STAMP)
	$(BIN)/pytest -m soak

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache
