# Two commands on a fresh clone: `make demo`, `make test`. `make up` / `make down` run the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .local/tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced

.PHONY: help env up down reset sql status demo test test-fast bench bench-ingest bench-catch-up bench-events clean browser

help:
	@echo "make demo   - start the local stack and run the pipeline end to end on sample batches"
	@echo "make test   - run the whole test suite (starts its own stack)"
	@echo "make up     - start S3/SQS (moto), PostgreSQL and Prefect in the background; settings in .local/env"
	@echo "make down   - stop the local stack; S3 and the queues are saved to .local/s3/, warehouse and Prefect stay"
	@echo "make reset  - stop the local stack and delete its state (warehouse, Prefect database, S3 snapshot, logs)"
	@echo "make sql    - an SQL prompt (psql) on the local warehouse"

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
	$(PY) -m deployments.local_stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m deployments.local_stack down; else echo "nothing to stop"; fi

reset:
	@if [ -x $(PY) ]; then $(PY) -m deployments.local_stack reset; else echo "nothing to reset"; fi

sql: env
	@$(PY) -m deployments.sql

status: env
	$(PY) -m deployments.local_stack status

demo: up
	$(PY) -m deployments.demo

# Headless Chromium and its driver for the UI tests (tests/test_ui.py), from Debian's packages: installed
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

test: env browser
	$(PY) -m pytest

# The stack-free tests: no service is started (tests/conftest.py fails one that tries).
test-fast: env
	ETL_TEST_TIER=fast $(PY) -m pytest -m "not stack and not slow" -q

clean: down
	rm -rf .local $(VENV)

bench-events: up
	$(PY) -m bench.event_latency --uploads 20

bench: bench-ingest bench-catch-up

bench-ingest: up
	$(PY) -m bench.ingest

bench-catch-up: up
	$(PY) -m bench.catch_up
