PY ?= python3
VENV ?= .venv
PEERS ?= cellpose,stardist
BIN := $(VENV)/bin

.PHONY: install test test-all lint typecheck package-check bench peers-env stardist-env peers real-data missed-cells size-sweep pretrained dsb-table1 samples-scores clean

install:  ## create .venv and install cellcount (editable) with dev extras
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,formats,napari,bioimageio,dask]'

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

# Cellpose 3 pins an older numpy than the package's, so it gets its own environment;
# it shares .venv's torch through a .pth file (one CPU torch for both, nothing fetched twice).
peers-env:  ## .venv-peers with Cellpose 3 for the peer benchmark (bench section 10)
	$(PY) -m venv .venv-peers
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" > .venv-peers/lib/python$$($(BIN)/python -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")/site-packages/zz_cellcount_main.pth
	.venv-peers/bin/pip install 'cellpose>=3.1,<4'

# StarDist 0.9 on TensorFlow CPU as a second peer, in its own environment (no torch).
# csbdeep>=0.8.2 runs on TensorFlow 2.16+'s Keras 3 as it is: no tf-keras, no TF_USE_LEGACY_KERAS.
stardist-env:  ## .venv-stardist with StarDist 0.9 on TensorFlow CPU for the peer benchmark
	$(PY) -m venv .venv-stardist
	echo '*' > .venv-stardist/.gitignore  # git ignores the environment (as Python 3.13's venv does)
	.venv-stardist/bin/pip install 'stardist>=0.9,<0.10' 'csbdeep>=0.8.2,<0.9' 'tensorflow-cpu>=2.15,<3' tifffile pillow
	.venv-stardist/bin/python -c "import stardist, tensorflow; print('stardist', stardist.__version__, 'tensorflow', tensorflow.__version__)"

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache

# The next five need data that is not shipped: the full DSB 2018 fluorescence set
# (CELLCOUNT_DSB=/path/to/it) and the FNC sample folder (CELLCOUNT_FNC=/path/to/it).
real-data:  ## the shipped model vs the classical baseline on held-out real sets -> docs/results/real_data.md
	$(BIN)/python -m scripts.real_data

missed-cells:  ## which held-out cells the shipped model misses, and why -> docs/results/missed_cells.md
	$(BIN)/python -m scripts.missed_cells

size-sweep:  ## the automatic cell size on held-out images rescaled to 8-120 px cells -> docs/results/size_sweep.md
	$(BIN)/python -m scripts.size_sweep

pretrained:  ## train the shipped `pretrained` model -> cellcount/resources/models/
	$(BIN)/python -m scripts.make_pretrained

dsb-table1:  ## DSB 2018 Table 1: c_resunet trained on DSB vs the classical baseline -> outputs/dsb_benchmark/
	$(BIN)/python -m scripts.dsb_table1

peers:  ## train the peers (Cellpose 3, StarDist; PEERS=cellpose,stardist) from scratch on the DSB training images (~1 h each, once) and score them beside cellcount -> docs/results/peers.md
	$(BIN)/python -m scripts.peers --peers $(PEERS)

samples-scores:  ## the shipped model on every shipped sample set -> docs/results/samples.md
	$(BIN)/python -m scripts.score_samples
