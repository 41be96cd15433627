# Lead Intake: `make run` starts it locally, `make test` runs lint, type checks and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck manifests alerts format system-deps test-deps install clean bench chaos \
	image image-check monitoring-files

## Debian packages the service and its tests need (installed only when missing).
system-deps:
	@missing=(); \
	command -v redis-server >/dev/null || missing+=(redis-server); \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv); \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq "$${missing[@]}"; \
	fi

## What only the checks need: promtool (Debian's prometheus package) for the alert rules.
test-deps:
	@if ! command -v promtool >/dev/null; then \
	  echo "installing: prometheus (for promtool)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: system-deps $(STAMP)

## Start the service on local defaults: private Redis, Close emulator when no API key is set.
run: install
	$(BIN)/lead-intake dev

## Lint, type checks and the whole test suite.
test: install test-deps lint typecheck manifests alerts
	$(BIN)/pytest

## The alert rules (deploy/monitoring): promtool checks them and runs their unit tests, where
## every alert has a test that fires it and one that keeps it quiet.
alerts: test-deps
	promtool check rules deploy/monitoring/alerts.yaml
	promtool test rules tests/deploy/alerts_test.yaml

lint: $(STAMP)
	$(BIN)/ruff check service close_emulator tests bench
	$(BIN)/ruff format --check service close_emulator tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

## Deployment checks, all in tests/deploy: hadolint on the Dockerfile, docker-compose.yml, and
## every deploy/ overlay rendered with `kubectl kustomize` and validated offline (skipped, with
## the reason, where kubectl is absent).
manifests: $(STAMP)
	$(BIN)/pytest tests/deploy -q

## The image, labelled with the package's version (service/__init__.py) and, when given, where
## its source is: make image IMAGE=registry.example.com/lead-intake IMAGE_SOURCE=https://...
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' service/__init__.py)
IMAGE ?= lead-intake
IMAGE_SOURCE ?=
CONTAINER_TOOL ?= $(shell command -v docker || command -v podman)
image:
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(IMAGE_SOURCE) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null) -t $(IMAGE):$(VERSION) .

## The image built and run for real with podman (tests/image): Redis, the emulator, the receiver
## and the worker as locked-down containers, SIGTERM under load, then docker-compose.yml's
## services. Installs podman, runc, catatonit and mmdebstrap when missing. About 2 minutes on a
## 2-core machine, the first time included (bootstrapping the stand-in base images from Debian
## packages, where the official ones cannot be pulled, takes under a minute of that).
image-check: install
	@missing=(); \
	for tool in podman runc catatonit mmdebstrap; do \
	  command -v $$tool >/dev/null || missing+=($$tool); \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq --no-install-recommends "$${missing[@]}" || true; \
	fi
	INTAKE_IMAGE_CHECK=1 IMAGE_SOURCE=$(IMAGE_SOURCE) $(BIN)/pytest tests/image -s

format: $(STAMP)
	$(BIN)/ruff format service close_emulator tests bench
	$(BIN)/ruff check --fix service close_emulator tests bench

## Benchmarks (bench/README.md): intake, worker throughput, Close's rate limit, end-to-end
## latency, memory, scale-out; prints the figures and writes bench/RESULTS.md and
## bench/results.png, in under 10 minutes. Load stays on 127.0.0.1. Arguments for one part:
## make bench BENCH_ARGS='--only intake'  (or --quick, --profile; see python -m bench.run -h)
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: install $(BENCH_STAMP)
	@missing=(); \
	command -v wrk >/dev/null || missing+=(wrk); \
	command -v taskset >/dev/null || missing+=(util-linux); \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq "$${missing[@]}"; \
	fi
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run $(BENCH_ARGS)

## The long chaos run (tests/reliability/README.md): 5,000 submissions while workers, a receiver
## and Redis are killed or restarted and Close misbehaves; prints the counts. About 5 minutes.
## INTAKE_CHAOS_SEED=N replays a run's plan.
chaos: install
	INTAKE_CHAOS_LONG=1 $(BIN)/pytest tests/reliability/test_chaos.py -k long -q -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## deploy/monitoring/prometheusrule.yaml from alerts.yaml (tests/deploy checks they agree).
monitoring-files: $(STAMP)
	$(BIN)/python -m tests.deploy.test_monitoring > deploy/monitoring/prometheusrule.yaml
