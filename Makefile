# cartwise — two commands matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install browser run serve seed lint format typecheck test test-fast bench loadtest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## the browser tests drive Debian's Chromium (no browser download): install it when missing
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

## make run: virtualenv, Redis if none answers, schema, demo data, serve on :8000. Ctrl-C stops.
run: install
	$(BIN)/cartwise demo

serve: install
	$(BIN)/cartwise serve

seed: install
	$(BIN)/cartwise seed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy engine features training serving

## make test: install, lint, type check, then every test (unit, integration on SQLite and
## PostgreSQL, e2e over HTTP on Ray Serve).
test: lint typecheck browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "unit" $(PYTEST_ARGS)

## make loadtest: mixed traffic on Ray Serve, then the same app under plain uvicorn; reports/
LOADTEST_ARGS ?= --users 100 --rate 1 --seconds 60 --processes 2
loadtest: install
	$(BIN)/python -m loadtests.run $(LOADTEST_ARGS)

bench: install
	$(BIN)/python -m loadtests.bench_commerce

clean:
	rm -rf $(VENV) var reports .pytest_cache .mypy_cache .ruff_cache
