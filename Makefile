# Two entry points: `make repro` (set up + run the pipeline) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast bench clean-venv

setup: $(STAMP)

# torch==2.13.0 first: that exact version is the CPU wheel on disk; letting a dependency pick
# torch would pull several GB of CUDA packages. llama-cpp-python compiles (~8 min, then cached);
# the editable install compiles our C modules (src/tripleforge/*.c) in place.
$(STAMP): pyproject.toml setup.py $(wildcard src/tripleforge/*.c src/tripleforge/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

repro: setup
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show
	$(BIN)/tripleforge summary

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e and not slow" tests

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
