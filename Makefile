# Fresh machine: `make demo` (set up + the demo) or `make test` (set up + the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Pinned first so pip takes the local CPU build and never pulls a multi-GB CUDA torch.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/mrimpute demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest Testing MRImputation/MRImputationLib

bench: $(STAMP)
	$(BIN)/python Testing/Benchmarks/bench_preprocessing.py --out Testing/Benchmarks/results/preprocessing.md

clean:
	rm -rf $(VENV) demo-output .pytest_cache
