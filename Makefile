# cartwise — two commands matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install browser run serve seed lint lint-code audit format typecheck test test-fast bench loadtest clean

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

## make lint: ruff, bandit (security findings; configured in pyproject.toml) and the audit.
lint: lint-code audit

lint-code: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -c pyproject.toml -r engine features serving training -q

## make audit: known vulnerabilities of the installed packages (pip-audit against PyPI's
## advisories, one JSON request per package and version). --strict: a package the service
## cannot answer for fails the audit, so an unreachable service is a failure, never a pass.
AUDIT_LOG := $(VENV)/pip-audit.log
audit: install
	@$(BIN)/pip-audit --strict --skip-editable --progress-spinner off >$(AUDIT_LOG) 2>&1 || { \
	  tail -n 25 $(AUDIT_LOG); \
	  if grep -q "could not be audited" $(AUDIT_LOG); then \
	    echo "make audit FAILED: PyPI's per-release vulnerability data"; \
	    echo "(https://pypi.org/pypi/<package>/<version>/json) did not answer from this machine"; \
	    echo "(unreachable, or an index that does not serve it): the packages were NOT audited."; \
	  else echo "make audit FAILED: see the table above; raise the package's pin past the fix."; fi; \
	  exit 1; }
	@tail -n 3 $(AUDIT_LOG)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy engine features training serving

## make test: install, lint (without the audit, which needs PyPI's vulnerability data: `make
## lint` or `make audit` where it answers), type check, then every test (unit, integration on
## SQLite and PostgreSQL, e2e over HTTP on Ray Serve).
test: lint-code typecheck browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "unit" $(PYTEST_ARGS)

## make loadtest: mixed traffic on Ray Serve, then the same app under plain uvicorn; reports/
LOADTEST_ARGS ?= --users 100 --rate 1 --seconds 60 --processes 3
loadtest: install
	$(BIN)/python -m loadtests.run $(LOADTEST_ARGS)

bench: install
	$(BIN)/python -m loadtests.bench_commerce

clean:
	rm -rf $(VENV) var reports .pytest_cache .mypy_cache .ruff_cache
