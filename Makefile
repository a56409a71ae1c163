# Two commands for a new user: `make run` (the quickstart study on SQLite) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   ?= studies/quickstart.toml
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean benchmark chromium study

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,datasets]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/bench run $(SPEC)

lint: install
	$(BIN)/ruff check bench tests benchmarks examples
	$(BIN)/mypy

# Headless Chromium renders the HTML report in tests/test_report.py; installed (Debian/CI, as root) only when missing.
# Elsewhere that test skips, unless BENCH_REQUIRE_SERVICES=1 makes it fail.
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium not installed: the headless HTML report check will be skipped"

test: lint chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The published example study (docs/lstm_depth/): tunes from scratch into a fresh SQLite file, then reports.
study: install
	rm -f runs/lstm_depth.db
	$(BIN)/bench run studies/lstm_depth.toml --storage sqlite:///runs/lstm_depth.db --workers 2 --threads 1 \
		--out docs/lstm_depth

benchmark: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs reports .mypy_cache .ruff_cache .pytest_cache
