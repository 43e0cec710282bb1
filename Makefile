PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint typecheck bench real-data pretrained fnc-samples clean

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

real-data:  ## DSB 2018 accuracy: c_resunet vs the classical baseline -> outputs/dsb_benchmark/table1.md
	$(BIN)/python -m benchmarks.real_data

pretrained:  ## train the shipped `pretrained` model -> cellcount/resources/models/
	$(BIN)/python -m benchmarks.make_pretrained

fnc-samples:  ## pretrained model on the 4 real FNC yellow samples -> benchmarks/results/
	$(BIN)/python -m benchmarks.fnc_samples --cell-diameter 40
	$(BIN)/python -m benchmarks.fnc_samples --cell-diameter 25
