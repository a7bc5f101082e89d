# Atelier: `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test test-fast lint typecheck imports install system-deps octoprint clean help

help:
	@echo "make demo       hub + embedded broker + simulated machines on http://127.0.0.1:8000"
	@echo "make test       every test suite (installs what it needs)"
	@echo "make test-fast  the suites that run in a few minutes"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed: apt-get install python3.11 python3.11-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[edge,hub,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/atelier demo

# Mosquitto runs in the tests as a real broker; apt installs it when we may.
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto with apt"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else \
	    echo "Mosquitto is needed for the tests: sudo apt-get install mosquitto"; exit 1; \
	  fi; \
	fi
	@# The web app's browser tests drive Debian's chromium (Playwright never downloads one).
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium with apt"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@# debootstrap builds the Debian root of the Ansible converge test (skipped without it).
	@if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ] \
	  && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing debootstrap with apt"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# The import boundaries of docs/architecture.md (import-linter contracts in pyproject.toml).
imports: install
	$(BIN)/lint-imports

# PostgreSQL is used when one answers on 127.0.0.1:5432 (and ATELIER_TEST_DATABASE_URL is unset).
PG_ENV = $$( [ -n "$$ATELIER_TEST_DATABASE_URL" ] && echo "$$ATELIER_TEST_DATABASE_URL" || \
	( $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null && echo "$(PG_URL)" ) )

# The OctoPrint tests run a real OctoPrint (its own venv under .tools/, installed once).
octoprint: install
	$(BIN)/python -m tests.support.octoprint install

test: install system-deps lint typecheck imports octoprint
	ATELIER_TEST_DATABASE_URL="$(PG_ENV)" $(BIN)/pytest -q -p no:cacheprovider --durations=25

test-fast: install system-deps
	ATELIER_TEST_DATABASE_URL="$(PG_ENV)" $(BIN)/pytest -q -p no:cacheprovider -m "not slow"

clean:
	rm -rf $(VENV) .tools .atelier-demo .pytest_cache .mypy_cache .ruff_cache
