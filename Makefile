# capt: `make test` (lint + all tests), `make demo` (local stack + the example), `make down`.
# Everything runs from ./.venv, created and installed on first use; later runs only
# reinstall when pyproject.toml changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.capt-installed
EXAMPLE ?= examples/capi-quickstart.yaml

.PHONY: help install system-deps test e2e e2e-ui chaos check lint demo down clean histories bench bench-small

help:
	@echo "make test   create .venv if missing, install, lint, then the unit and time-skipping workflow tests (parallel)"
	@echo "make e2e    the end-to-end tests on the local stack (marker e2e), then make chaos"
	@echo "make e2e-ui the Temporal Web UI in Debian's chromium (Selenium), screenshots in docs/img/"
	@echo "make chaos  the chaos suite on its own local stack: worker/server kill -9, AWS faults, account audit (SEED=N, SCENARIO=id)"
	@echo "make check  both"
	@echo "make bench  every benchmark at full size (hours), tables printed, docs/BENCHMARKS.md + docs/img/ rewritten"
	@echo "make bench-small  every benchmark at its small default (a few minutes), same outputs"
	@echo "make demo   start the local stack (capt dev up) and create the cluster in $(EXAMPLE)"
	@echo "make down   stop the local stack (capt dev down)"
	@echo "make histories  re-record tests/histories/ from real runs on a local stack of its own (docs/versioning.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# Debian packages the tests use: cloud-init (its schema validator checks the rendered
# user data). Installed once, as root; skipped with a warning where that is impossible.
system-deps:
	@if ! command -v cloud-init >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing cloud-init (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init >/dev/null; \
	  else \
	    echo "warning: cloud-init is not installed and this is not a root Debian shell; run: sudo apt-get install -y cloud-init" >&2; \
	  fi; \
	fi

install: $(STAMP) system-deps

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Unit + time-skipping workflow tests, spread over the cores (pytest-xdist; `loadfile` keeps a
# module's tests on one worker, so its module-scoped fixtures start once). Twice as many workers
# as the 2 cores CI has: a workflow test spends part of its time waiting on the test server, so
# 4 workers keep both cores busy (measured: 197 s with 2 workers, 175 s with 4).
PYTEST_WORKERS ?= 4
test: install lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# End-to-end tests: real processes on the local stack (dev server, moto server, simulator,
# workers), one at a time; then the chaos suite.
E2E_CHAOS ?= 1
e2e: install
	$(BIN)/pytest -m "e2e and not chaos and not webui" --timeout 900
	@if [ "$(E2E_CHAOS)" = 1 ]; then $(MAKE) chaos; fi

# The chaos suite (capt/dev/testkit/chaos/): its own local stack on free ports, scenarios one after the
# other, a table in .capt-chaos/report.md; non-zero exit (and the seed) if a scenario failed.
SEED ?=
SCENARIO ?=
chaos: install
	$(BIN)/python -m capt.dev.testkit.chaos $(if $(SEED),--seed $(SEED)) $(foreach s,$(SCENARIO),--scenario $(s))

check: test e2e

# The benchmarks (capt/dev/bench/, `python -m capt.dev.bench <name>` runs one): each prints a table and saves
# docs/bench/<name>.json; the report turns them into docs/BENCHMARKS.md with plots in docs/img/.
# Run alone: they measure CPU and wall time, and anything else on the 2 cores skews them.
bench: install
	$(BIN)/python -m capt.dev.bench all --full

bench-small: install
	$(BIN)/python -m capt.dev.bench all

# The Temporal Web UI in a real browser: Debian's chromium + chromium-driver (apt-get, as root),
# Selenium from PyPI; screenshots in docs/img/. Skipped with its reason where chromium is missing.
e2e-ui: install
	@if ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium + chromium-driver (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else \
	    echo "warning: chromium-driver is not installed and this is not a root Debian shell: the test will be skipped" >&2; \
	  fi; \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,ui]'
	$(BIN)/pytest -m webui --timeout 900 -rs

# The local stack, then the example cluster created through the CLI as a user would.
demo: install
	$(BIN)/capt dev up
	$(BIN)/capt validate -f $(EXAMPLE)
	@eval "$$($(BIN)/capt dev env)" && \
	  $(BIN)/capt bootstrap iam >/dev/null && \
	  time $(BIN)/capt apply -f $(EXAMPLE) --wait --timeout 20m && \
	  $(BIN)/capt describe cluster capi-quickstart -n capi-quickstart && \
	  echo "Web UI: $$CAPT_WEB_UI/namespaces/default/workflows/cluster%2Fcapi-quickstart%2Fcapi-quickstart"

# Workflow histories for the replay test (tests/workflows/test_replay.py): one small cluster driven
# through every path on a local stack of its own (fresh state dir, free ports), stopped at the end.
histories: install
	$(BIN)/python -m capt.dev.testkit.histories

down: $(STAMP)
	$(BIN)/capt dev down

clean: down
	rm -rf .capt
