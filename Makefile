# edgeops: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Nothing leaves the premises: telemetry off for every tool this Makefile starts.
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export ORT_DISABLE_TELEMETRY := 1
export EVIDENTLY_DISABLE_TELEMETRY := 1
export UV_PYTHON := 3.11

PYTHON ?= python3
# uv from PATH, else the copy `make venv` installs with pip (python -m uv)
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
RUN := $(VENV)/bin
# DVC stages run `python -m edgeops.stages...`: that python must be the project's
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv keys demo test lint format bench-export clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n",$$1,$$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "uv not found: installing it from the package index with pip"; $(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --extra pipeline
	@touch $@

venv: $(VENV)/.synced ## create .venv with edgeops, the [pipeline] extra and the dev tools (from uv.lock)

keys: venv ## create the bundle signing key pair if there is none ($$EDGEOPS_KEY_DIR or ~/.config/edgeops/keys)
	@$(RUN)/edgeops keys init --if-missing

demo: venv keys ## install, then run the whole pipeline on the built-in demo plant data
	$(RUN)/dvc repro
	@echo
	$(RUN)/dvc metrics show
	@echo
	$(RUN)/edgeops bundle verify models/bundle --public-key "$${EDGEOPS_KEY_DIR:-$$HOME/.config/edgeops/keys}/signing.pub"
	@echo
	@echo "model:       models/model.joblib (scikit-learn), models/model.onnx, signed bundle in models/bundle/"
	@echo "metrics:     reports/metrics.json, reports/export.json   (dvc metrics show; plots: dvc plots show)"
	@echo "validation:  reports/validation/summary.json, reports/validation/data_docs/index.html"

bench-export: venv ## ORT vs scikit-learn latency of the demo model (run make demo first)
	$(RUN)/python bench/export.py

test: venv ## run the test suite (unit + integration)
	$(RUN)/pytest

lint: venv ## ruff lint and format check
	$(RUN)/ruff check src tests
	$(RUN)/ruff format --check src tests

format: venv ## apply ruff's formatting and safe fixes
	$(RUN)/ruff check --fix src tests
	$(RUN)/ruff format src tests

clean: ## remove the venv and every pipeline output (data, models, reports)
	rm -rf $(VENV) data/raw data/prepared models reports .pytest_cache
