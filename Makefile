# Two commands for a new user: `make run` (the quickstart study on SQLite) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   ?= studies/quickstart.toml
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean benchmark chromium study study-snapshot mutation mutation-score mutation-sample seeded-bugs

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
	@echo "bench is installed in $(VENV), not on PATH: '. $(BIN)/activate' (or call $(BIN)/bench) for README's commands"

lint: install
	$(BIN)/ruff check bench tests benchmarks examples
	$(BIN)/mypy

# Headless Chromium renders the HTML report in tests/test_report.py; installed (Debian/CI, as root) only when missing.
# Elsewhere that test skips, unless BENCH_REQUIRE_SERVICES=1 makes it fail.
chromium:
	@command -v chromium >/dev/null 2>&1 || (echo "make: installing headless Chromium for the HTML report test:" \
		"apt-get install chromium (about 130 packages; may upgrade system packages)" \
		&& apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium not installed: the headless HTML report check will be skipped"

test: lint chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The published answer (docs/stacked_lstm/): the suite studies/suites/stacked_lstm.toml, 8 experiments. Resumable:
# it continues runs/stacked_lstm.db, which starts as a copy of the committed storage (so on a finished run this only
# regenerates the reports); FRESH=1 tunes from scratch. More machines or processes can join with
# `bench worker studies/suites/stacked_lstm.toml --storage sqlite:///runs/stacked_lstm.db --threads 1`.
# The committed docs/stacked_lstm/bench.db is replaced when the run stops (finished or not: it is resumable).
study: install
	@mkdir -p runs
	@if [ -n "$(FRESH)" ]; then rm -f runs/stacked_lstm.db; \
	elif [ ! -f runs/stacked_lstm.db ] && [ -f docs/stacked_lstm/bench.db ]; then \
		cp docs/stacked_lstm/bench.db runs/stacked_lstm.db; fi
	$(BIN)/bench run studies/suites/stacked_lstm.toml --storage sqlite:///runs/stacked_lstm.db --workers 2 \
		--threads 1 --out docs/stacked_lstm
	$(MAKE) study-snapshot

# Commit-ready copy of the suite's storage (a consistent SQLite backup, safe while workers write) and its reports.
study-snapshot: install
	@mkdir -p docs/stacked_lstm
	$(BIN)/python -c "import sqlite3; s = sqlite3.connect('runs/stacked_lstm.db'); d = sqlite3.connect('docs/stacked_lstm/bench.db'); s.backup(d); d.execute('VACUUM'); d.close()"
	$(BIN)/bench report studies/suites/stacked_lstm.toml --storage sqlite:///docs/stacked_lstm/bench.db \
		--out docs/stacked_lstm

benchmark: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/throughput.py

# Mutation testing of the core modules (docs/mutation.md). One process, so a shared machine keeps its other core;
# sharded by module, and incremental: results are kept in mutants/ and only changed functions are retested.
#   make mutation MODULE=bench.report.stats              one module (about 5-15 min each)
#   make mutation MODULE=bench.report.build.x_fairness   one function's mutants
#   make mutation                                        every configured module (about an hour)
MODULE ?=
# OMP_NUM_THREADS=1: mutmut forks each mutant's run from a process whose tests already trained with torch; a
# forked child then waits for ever on the parent's intra-op thread pool (a false "timeout"). One thread has no pool.
mutation: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 1 $(if $(MODULE),"$(MODULE)*")
	$(BIN)/python tests/mutation_score.py $(MODULE)

mutation-score: install
	$(BIN)/python tests/mutation_score.py $(MODULE)

# An estimate with a 95% interval when a complete run does not fit the time at hand: N mutants per module drawn
# at random (SEED), run, and scored alone. Without mutants/, the first step generates it (and runs mutmut's
# clean tests: minutes).
#   make mutation-sample N=40                  every configured module
#   make mutation-sample N=60 MODULE=bench.spec
#   make mutation-sample N=40 SEED=5 EXCLUDE="docs/mutation-samples/*.txt"   a fresh sample, none of the earlier ones' mutants
# A sample whose survivors tests were then written from no longer estimates the score: draw a fresh one for that.
N ?= 40
SEED ?= 0
EXCLUDE ?=
mutation-sample: install
	@# mutmut generates every mutant, then stops at a filter that matches none ("nothing matches": not an error here)
	test -d mutants || (OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 1 "bench.no_such_module" \
		|| test -d mutants)
	$(BIN)/python tests/mutation_score.py $(MODULE) --draw $(N) --seed $(SEED) $(if $(EXCLUDE),--exclude $(EXCLUDE))
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 1 $$(cat mutants/sample.txt)
	$(BIN)/python tests/mutation_score.py $(MODULE) --sample

# The one-line bugs of issue 12, each applied alone: every one must make its tests fail (tests/seeded_bugs.py).
seeded-bugs: install
	$(BIN)/python tests/seeded_bugs.py

clean:
	rm -rf $(VENV) runs reports mutants .mypy_cache .ruff_cache .pytest_cache .hypothesis
