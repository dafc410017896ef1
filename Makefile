# Every target sets up what it needs: a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
PYTEST_ARGS ?=
# Which tests: a pytest marker expression (the soak runs have their own target).
MARKS ?= not soak
# Four pytest workers, whatever the cores: the suite mostly waits on sockets, timers and
# child processes (on 2 cores, 4 workers took 3:21 where 2 took 5:55). Tests marked
# `serial` measure elapsed time, so they run after the others, on their own.
PYTEST_WORKERS ?= -n 4 --dist worksteal

.PHONY: test lint typecheck pytest demo bench bench-quick soak docs dist clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/*.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/*.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_WORKERS) -m "($(MARKS)) and not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -p no:xdist -m "($(MARKS)) and serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]

demo: $(STAMP)
	$(BIN)/async-dispatch demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.render   # the figures in README.md and benchmarks/README.md

# The fleet scenario is left out here: it has its own tests, and its quick run alone takes
# about a minute (`python -m benchmarks --quick --only fleet`).
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --only overhead,memory,saturated,workload,faults,hybrid

soak: $(STAMP)
	$(BIN)/pytest -m soak

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# The documentation site, into site/ (warnings are errors: a broken reference fails).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The wheel and sdist, into dist/ (the distribution is not on PyPI yet: install these).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist

clean:
	rm -rf $(VENV) build dist site .mypy_cache .ruff_cache
