PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint typecheck bench clean

install:  ## create .venv and install cellcount (editable) with dev extras
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'

test:  ## fast test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-all:  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m ''

lint:
	$(BIN)/ruff check cellcount tests benchmarks
	$(BIN)/ruff format --check cellcount tests benchmarks

typecheck:
	$(BIN)/mypy cellcount

bench:  ## speed and memory benchmarks -> BENCHMARKS.md (minutes; not part of the tests)
	$(BIN)/python -m benchmarks.run --out BENCHMARKS.md

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
