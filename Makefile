PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint typecheck package-check bench real-data pretrained samples-scores clean

install:  ## create .venv and install cellcount (editable) with dev extras
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'

test:  ## fast test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-all:  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m ''

lint:  ## ruff lint and format check
	$(BIN)/ruff check cellcount tests benchmarks scripts
	$(BIN)/ruff format --check cellcount tests benchmarks scripts

typecheck:  ## mypy on the package
	$(BIN)/mypy cellcount

package-check:  ## build the wheel, install it elsewhere, train/sweep/evaluate/count from another folder
	PYTHON=$(BIN)/python bash .ci/packaging-smoke

bench:  ## speed and memory benchmarks -> BENCHMARKS.md (minutes; not part of the tests)
	$(BIN)/python -m benchmarks.run --out BENCHMARKS.md

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache

# The next two need the full DSB 2018 fluorescence set (not shipped): CELLCOUNT_DSB=/path/to/it
real-data:  ## DSB 2018 accuracy: c_resunet vs the classical baseline -> outputs/dsb_benchmark/table1.md
	$(BIN)/python -m scripts.real_data

pretrained:  ## train the shipped `pretrained` model -> cellcount/resources/models/
	$(BIN)/python -m scripts.make_pretrained

samples-scores:  ## the shipped model on every shipped sample set -> docs/results/samples.md
	$(BIN)/python -m scripts.score_samples
