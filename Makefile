# Two commands for a new user: `make run` (the quickstart study on SQLite) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   ?= studies/quickstart.toml
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean benchmark

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/bench run $(SPEC)

lint: install
	$(BIN)/ruff check bench tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

benchmark: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs reports .mypy_cache .ruff_cache .pytest_cache
