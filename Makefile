# edgeops: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Nothing leaves the premises: telemetry off for every tool this Makefile starts. The switches
# live in one file (edgeops.offline reads it too); export every name it sets.
TELEMETRY_OFF_ENV := src/edgeops/telemetry-off.env
include $(TELEMETRY_OFF_ENV)
export $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' $(TELEMETRY_OFF_ENV))
export UV_PYTHON := 3.11

PYTHON ?= python3
# uv from PATH, else the copy `make venv` installs with pip (python -m uv)
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
RUN := $(VENV)/bin
# the venv's tools first (dvc, edgeops: the stages in dvc.yaml run `edgeops stage NAME`)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: requirements help venv keys demo demo-monitoring agent agent-stop deploy up down test lint format bench bench-export bench-agent bench-orchestration bench-monitor bench-scaling bench-stages bench-contention bench-startup clean

KEY_DIR := $(or $(EDGEOPS_KEY_DIR),$(HOME)/.config/edgeops/keys)
AGENT_STATE := data/agent
# the demo agent's address, for the summary: read from deploy/targets.yaml (the one place it is set)
AGENT_URL = $(shell $(RUN)/python -c "import yaml; print(next(t['url'] for t in yaml.safe_load(open('deploy/targets.yaml'))['targets'] if t['name'] == 'demo-local'))")

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n",$$1,$$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "uv not found: installing it from the package index with pip"; $(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --extra pipeline --compile-bytecode
	$(RUN)/python -m compileall -q src
	@touch $@

venv: $(VENV)/.synced ## create .venv with edgeops, the [pipeline] extra and the dev tools (from uv.lock)

keys: venv ## create the bundle signing key pair if there is none ($$EDGEOPS_KEY_DIR or ~/.config/edgeops/keys)
	@$(RUN)/edgeops keys init --if-missing

demo: venv keys ## install, run the pipeline on the demo plant data, deploy it to a local agent
	$(RUN)/dvc repro
	@echo
	$(RUN)/dvc metrics show
	@echo
	$(RUN)/edgeops bundle verify models/bundle --public-key "$(KEY_DIR)/signing.pub"
	@$(MAKE) --no-print-directory agent
	$(RUN)/edgeops deploy --all --reason demo
	@echo
	$(RUN)/edgeops status
	@echo
	$(RUN)/edgeops predict --target demo-local
	@echo
	@$(MAKE) --no-print-directory up
	@echo
	$(RUN)/edgeops run training --reason "make demo"
	@echo
	@$(MAKE) --no-print-directory demo-monitoring
	@echo
	@echo "model:       models/model.joblib (scikit-learn), models/model.onnx, signed bundle in models/bundle/"
	@echo "metrics:     reports/metrics.json, reports/parity.json (dvc metrics show), reports/gate.json"
	@echo "validation:  reports/validation/summary.json, reports/validation/report.html"
	@echo "agent:       $(AGENT_URL)/docs (state in $(AGENT_STATE)/, stop: make agent-stop)"
	@echo "registry:    deploy/registry.json, audit log: deploy/audit.jsonl"
	@echo "monitoring:  reports/monitoring/demo-local/drift.html (Evidently), reports/monitoring/decision.json, summary.md"
	@echo "             drift over time: edgeops monitor ui  (Evidently UI on http://127.0.0.1:8000)"
	@echo "Prefect UI:  http://127.0.0.1:$$($(RUN)/python -c "import yaml; print((yaml.safe_load(open('params.yaml')).get('orchestration') or {}).get('port', 4200))")  (the run, its summary and metrics; stop: make down)"

demo-monitoring: ## the loop: baseline traffic -> no retrain; drift traffic -> retrain -> new version
	@echo "--- baseline traffic to the agent: the monitoring run should keep the model"
	$(RUN)/edgeops simulate --target demo-local --scenario baseline --rows 2000 --batch 50 --feedback-share 0.3
	$(RUN)/edgeops run monitoring
	@echo
	@echo "--- a hot summer: drift; the monitoring run starts a training run (reason: drift) and it deploys"
	$(RUN)/edgeops simulate --target demo-local --scenario hot_summer --rows 2000 --batch 50 --feedback-share 0.3
	$(RUN)/edgeops run monitoring
	@echo
	$(RUN)/edgeops status

agent: venv keys ## start the demo edge agent in the background (its address: demo-local in deploy/targets.yaml)
	@$(RUN)/edgeops agent start demo-local --state-dir $(AGENT_STATE)

deploy: venv keys ## gate + rollout of models/bundle to deploy/targets.yaml (DEPLOY_ARGS=--replace-model ...)
	$(RUN)/edgeops deploy --all $(DEPLOY_ARGS)

agent-stop: ## stop the demo edge agent
	@if [ -x $(RUN)/edgeops ]; then $(RUN)/edgeops agent stop demo-local --state-dir $(AGENT_STATE); fi

up: agent ## start the Prefect server, apply prefect.yaml, start a worker (logs in .prefect/logs/)
	$(RUN)/edgeops up

down: ## stop the Prefect worker and server that `make up` started
	@if [ -x $(RUN)/edgeops ]; then $(RUN)/edgeops down; fi

requirements: ## src/edgeops/examples/requirements-agent.txt from uv.lock: the device's locked, hash-checked install
	@{ sed -n '1,6p' src/edgeops/examples/requirements-agent.txt; $(UV) export --frozen --no-dev --no-emit-project \
		--format requirements-txt --no-header; } > src/edgeops/examples/requirements-agent.txt.tmp
	@mv src/edgeops/examples/requirements-agent.txt.tmp src/edgeops/examples/requirements-agent.txt
	@echo "src/edgeops/examples/requirements-agent.txt: $$(grep -c '^[a-z]' src/edgeops/examples/requirements-agent.txt) packages, hash-checked"

bench: venv ## every benchmark side by side with its baseline (~15 min): reports/bench/summary.md, *.json, scaling.png (BENCH_ARGS=--huge adds 100M rows)
	$(RUN)/python bench/suite.py $(BENCH_ARGS)

bench-export: venv ## ORT vs scikit-learn latency of the demo model (run make demo first)
	$(RUN)/python bench/export.py

bench-agent: venv ## agent latency/throughput vs an echo endpoint and scikit-learn serving
	$(RUN)/python bench/agent.py

bench-orchestration: venv ## a training run through Prefect server + worker vs a bare dvc repro
	$(RUN)/python bench/orchestration.py

bench-monitor: venv ## edgeops monitor (collect + quality + drift + report, 100,000 rows) vs Evidently alone
	$(RUN)/python bench/monitor.py

bench-scaling: venv keys ## the pipeline at 10k..10M rows: time and memory per stage, growth, plot, the profile of edgeops capacity
	$(RUN)/python bench/scaling.py

bench-stages: venv ## each pipeline stage vs its library alone at 1M rows; no-op dvc repro vs dvc status
	$(RUN)/python bench/stages.py

bench-contention: venv ## the 1M-row pipeline while an agent serves traffic and monitoring runs, vs its fair share
	$(RUN)/python bench/contention.py

bench-startup: venv ## edgeops --help and agent start -> ready with a model deployed
	$(RUN)/python bench/startup.py

test: venv ## run the test suite (unit + integration)
	$(RUN)/pytest -n 2 --dist loadfile

lint: venv ## ruff lint and format check
	$(RUN)/ruff check src tests flows bench
	$(RUN)/ruff format --check src tests flows bench

format: venv ## apply ruff's formatting and safe fixes
	$(RUN)/ruff check --fix src tests flows bench
	$(RUN)/ruff format src tests flows bench

clean: down agent-stop ## remove the venv and every pipeline output (data, models, reports)
	rm -rf $(VENV) data/raw data/prepared models reports .pytest_cache
