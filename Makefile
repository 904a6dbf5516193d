# Two commands on a fresh clone: `make demo`, `make test`. `make up` / `make down` run the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .local/tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced

.PHONY: help env up down reset status sql sql-bi sql-dwh demo test test-fast lint format browser bench bench-ingest bench-catch-up bench-catch-up-month bench-events bench-task-runs bench-decode bench-peer bench-compare clean

help:
	@echo "make demo           start the local stack and run the pipeline end to end on sample batches"
	@echo "make test           the whole suite, against a stack of its own (installs the browser for the UI tests)"
	@echo "make test-fast      the stack-free tests only: no service started (the loop to run all day)"
	@echo "make lint           ruff check, ruff format --check, the import contract (CI runs it before the tests)"
	@echo "make format         ruff format and ruff check --fix, in place"
	@echo "make up             start S3/SQS (moto), PostgreSQL, Prefect, worker and bridge; settings in .local/env"
	@echo "make down           stop the local stack; S3 and the queues are saved to .local/s3/, warehouse and Prefect stay"
	@echo "make reset          stop the local stack and delete its state (warehouse, Prefect database, S3 snapshot, logs)"
	@echo "make status         each service of the local stack: healthy or down, and its address"
	@echo "make sql            an SQL prompt (psql) on the local warehouse"
	@echo "make sql-bi         the same as the BI role (only the views of the BI schema)"
	@echo "make sql-dwh        the same as the DWH role (the warehouse schema, read only)"
	@echo "make env            create .venv from uv.lock (every other target does this first)"
	@echo "make browser        install Debian's chromium and chromium-driver if missing (as root)"
	@echo "make bench          both benchmarks below, one after the other"
	@echo "make bench-ingest   one file: records per second against the floor, and where the time goes"
	@echo "make bench-catch-up one week of hourly files through the catch-up flow, with and without load batches"
	@echo "make bench-catch-up-month  the same, then the batched catch-up over a month (720 files): cost per file"
	@echo "make bench-events   upload -> rows visible through the event path, p50 and p95, old launch beside new"
	@echo "make bench-task-runs what a step's task run costs, beside a file's staging, in one run"
	@echo "make bench-decode   what a line's unknown keys cost the decode (no stack), old way beside new"
	@echo "make bench-peer     dlt on the same files into the same PostgreSQL, defaults and fastest, beside the project"
	@echo "make bench-compare  bench-ingest and bench-catch-up of BASE (default f60a9c6) and this checkout, interleaved"
	@echo "make clean          stop the stack and delete .local and .venv"

# uv itself is installed into a private venv, pinned, so nothing on the machine is assumed but python3.
$(UV):
	@mkdir -p .local
	$(PYTHON) -m venv .local/tools
	.local/tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set (this machine, CI, the image) no
# .pyc is ever written at import, and every flow run on the process worker is a fresh interpreter that
# would compile prefect, pandas and the rest from source again (4.5 s instead of 2 s per run here).
$(STAMP): $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $(STAMP)

env: $(STAMP)

up: env
	$(PY) -m devstack.local_stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack.local_stack down; else echo "nothing to stop"; fi

reset:
	@if [ -x $(PY) ]; then $(PY) -m devstack.local_stack reset; else echo "nothing to reset"; fi

sql: env
	@$(PY) -m devstack.sql

sql-bi: env
	@$(PY) -m devstack.sql --as bi

sql-dwh: env
	@$(PY) -m devstack.sql --as dwh

status: env
	$(PY) -m devstack.local_stack status

demo: up
	$(PY) -m devstack.demo

# Headless Chromium and its driver for the UI tests (tests/e2e/test_ui.py), from Debian's packages: installed
# where missing and we are root (CI: a clean machine, as root). Elsewhere nothing is installed and the
# UI tests fail, saying the command that installs them.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	else \
		echo "browser: /usr/bin/chromium or /usr/bin/chromedriver missing and not root; the UI tests will fail." \
		     "Install them with: sudo apt-get install chromium chromium-driver"; \
	fi

# Three pytest workers (pytest-xdist) on two cores, a test file each at a time: each starts a local stack of
# its own, and a stack test often waits (on runs, the worker's polls, the server), so two workers left the
# cores idle part of the time. Measured on this 2-core machine (docs/testing.md): 581 s with 3 (541 s in a
# fresh clone's CI run), 768 s with 2 (not on a quiet machine: a helper session's stack tests ran beside it).
# The stack-free tier is CPU-bound: two workers (35 s) beat three (40 s).
TEST_WORKERS ?= 3
FAST_WORKERS ?= 2

test: env browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The stack-free tests, tests/unit/: no service is started (tests/conftest.py fails one that tries, and fails
# the collection of a test whose folder does not match what it needs).
test-fast: env
	ETL_TEST_TIER=fast $(PY) -m pytest -n $(FAST_WORKERS) tests/unit -q

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .local $(VENV)

bench-events: up
	$(PY) -m bench.event_latency --uploads 20  # 20 uploads each, the old and the new launch interleaved

bench: bench-decode bench-ingest bench-catch-up

# dlt (the bench group only: never in the image or the default environment) on the same files, beside the project.
bench-peer: up
	$(UV) run --frozen --group bench python -m bench.peer

# No stack needed: the decode of real-shaped lines (the unknown keys real batches carry) beside lines of known keys.
bench-decode: env
	$(PY) -m bench.decode

bench-ingest: up
	$(PY) -m bench.ingest

bench-catch-up: up
	$(PY) -m bench.catch_up

bench-task-runs: up
	$(PY) -m bench.task_runs

# Not part of `make bench`: the month's 720 files take several times the week's run.
bench-catch-up-month: up
	$(PY) -m bench.catch_up --also-month

# Issue #21: both benchmarks of BASE (a git worktree in .local/bench-base/) and of this checkout, on the same
# files and this stack, interleaved; bench/results/compare_<base>.json. Several times `make bench`'s time.
BASE ?= f60a9c6
bench-compare: up
	$(PY) -m bench.compare_revisions --base $(BASE)
