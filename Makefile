# Vigil: one place for the everyday commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install run test lint types unit integration bench schema dashboards dictionaries screenshots tools clean lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) ## create .venv and install Vigil with its dev tools

tools: ## Debian tools the tests use (promtool; amtool from prometheus-alertmanager; chromium + chromedriver)
	@command -v promtool >/dev/null || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
	  echo "installing headless Chromium and its driver (Debian packages chromium, chromium-driver)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
	@command -v amtool >/dev/null || { \
	  echo "installing amtool and Alertmanager (Debian package prometheus-alertmanager)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; }

run: install ## the embedded stack (broker + worker + chDB + Alertmanager) with demo traffic; Ctrl-C stops
	@command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    echo "installing Alertmanager (Debian package prometheus-alertmanager)"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null \
	      || echo "could not install Alertmanager: the stack runs without it"; \
	  fi; }
	$(VENV)/bin/vigil up --demo

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install ## mypy (strict on schemas/, streams/, sinks/)
	$(VENV)/bin/mypy

unit: install ## fast tests, no broker
	$(PY) -m pytest tests/unit

integration: install tools ## tests against the real broker and ClickHouse engine
	$(PY) -m pytest tests/integration

test: install tools lint types ## everything CI runs: lint, types, the whole suite
	$(PY) -m pytest

bench: install ## throughput benchmarks (prints figures and ratios; asserts nothing)
	$(PY) -m benchmarks.bench_hotpath
	$(PY) -m benchmarks.bench_ingest
	$(PY) -m benchmarks.bench_latency
	$(PY) -m benchmarks.bench_pii
	$(PY) -m benchmarks.bench_security
	$(PY) -m benchmarks.bench_funnels
	$(PY) -m benchmarks.bench_canary
	$(PY) -m benchmarks.bench_alert_quality
	$(PY) -m benchmarks.bench_views
	$(PY) -m benchmarks.bench_alerts

lock: ## re-resolve the dependencies in a fresh venv and pin them in requirements.lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip && .venv-lock/bin/pip install -q -e '.[dev]'
	{ sed -n '/^#/p' requirements.lock; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

schema: install ## re-export the JSON Schemas in schemas/jsonschema/
	$(VENV)/bin/vigil schema export schemas/jsonschema

dictionaries: ## rebuild the PII scanner's name dictionaries (streams/detectors/pii/data/names.json)
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	  wamerican wbritish wbrazilian wspanish wfrench wngerman >/dev/null
	rm -rf .venv-dict && $(PYTHON) -m venv .venv-dict
	.venv-dict/bin/pip install -q names-dataset wordfreq
	PYTHONPATH=. .venv-dict/bin/python streams/detectors/pii/build_dictionaries.py
	rm -rf .venv-dict

dashboards: install ## regenerate infra/grafana/dashboards/*.json from infra/grafana/dashboards.py
	$(PY) -m infra.grafana.dashboards

screenshots: install tools ## refresh docs/console-*.png from the time-compressed demo (headless Chromium)
	$(PY) -m tests.browser

clean: ## remove the venv and local state
	rm -rf $(VENV) .vigil .pytest_cache .mypy_cache .ruff_cache
