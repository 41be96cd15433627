# Lead Intake: `make run` starts it locally, `make test` runs lint, type checks and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck manifests format system-deps install clean

## Debian packages the service and its tests need (installed only when missing).
system-deps:
	@missing=(); \
	command -v redis-server >/dev/null || missing+=(redis-server); \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv); \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq "$${missing[@]}"; \
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
test: install lint typecheck manifests
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests

typecheck: $(STAMP)
	$(BIN)/mypy

## Deployment checks, all in tests/deploy: hadolint on the Dockerfile, docker-compose.yml, and
## every deploy/ overlay rendered with `kubectl kustomize` and validated offline (skipped, with
## the reason, where kubectl is absent).
manifests: $(STAMP)
	$(BIN)/pytest tests/deploy -q

format: $(STAMP)
	$(BIN)/ruff format service tests
	$(BIN)/ruff check --fix service tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
