# Lead Intake: `make run` starts it locally, `make test` runs lint, type checks and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test lint typecheck manifests alerts format system-deps test-deps install install-run \
	clean bench chaos failover image image-check monitoring-files

## Debian packages, installed only when missing (.ci/run uses the same targets): what running
## needs (system-deps), and what the tests need besides (test-deps: Chromium for tests/browser,
## promtool for the alert rules).
define apt_missing
	@missing=(); \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing+=("$${pair#*:}"); \
	done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv); \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}"; \
	fi
endef
RUN_PACKAGES := redis-server:redis-server
TEST_PACKAGES := $(RUN_PACKAGES) chromium:chromium promtool:prometheus

system-deps:
	$(call apt_missing,$(RUN_PACKAGES))

test-deps:
	$(call apt_missing,$(TEST_PACKAGES))

## The virtualenv: what running needs (fast the second time: nothing to do), and the
## development tools on top for `make test`.
$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; \
	else echo "installing the service into $(VENV)"; $(BIN)/pip install --quiet -e .; fi
	@touch $@

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install-run: system-deps $(RUN_STAMP)
install: system-deps $(STAMP)

## Start the service on local defaults: private Redis, Close emulator when no API key is set.
## Ports: INTAKE_PORT (8080), INTAKE_EMULATOR_PORT (8081) and INTAKE_PROVIDER_EMULATOR_PORT
## (8082), from the environment or as make variables (make run INTAKE_PORT=9080); a taken port
## stops it with one line (exit 5).
run: install-run
	@$(if $(INTAKE_PORT),INTAKE_PORT=$(INTAKE_PORT)) \
	  $(if $(INTAKE_EMULATOR_PORT),INTAKE_EMULATOR_PORT=$(INTAKE_EMULATOR_PORT)) \
	  $(if $(INTAKE_PROVIDER_EMULATOR_PORT),INTAKE_PROVIDER_EMULATOR_PORT=$(INTAKE_PROVIDER_EMULATOR_PORT)) \
	  $(BIN)/lead-intake dev

## Lint, type checks, the alert rules and the whole test suite (tests/deploy included, once).
test: test-deps install lint typecheck alerts
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

## Deployment checks alone (make test runs them too), all in tests/deploy: hadolint on the Dockerfile, docker-compose.yml, and
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
## and Redis are killed or restarted and Close misbehaves; prints the counts. 2-7 minutes.
## INTAKE_CHAOS_SEED=N replays a run's plan.
chaos: install
	INTAKE_CHAOS_LONG=1 $(BIN)/pytest tests/reliability/test_chaos.py -k long -q -s

## The Sentinel failover test (tests/reliability/README.md): a primary, a replica and three
## Sentinels on 127.0.0.1, the primary SIGKILLed under load, with and without
## INTAKE_ACK_REPLICAS; prints what was acknowledged and lost. About a minute.
failover: install
	INTAKE_FAILOVER=1 $(BIN)/pytest tests/reliability/test_failover.py -q -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## deploy/monitoring/prometheusrule.yaml from alerts.yaml (tests/deploy checks they agree).
monitoring-files: $(STAMP)
	$(BIN)/python -m tests.deploy.test_monitoring > deploy/monitoring/prometheusrule.yaml
