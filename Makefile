# The two commands: `make run` and `make test`. Both work on a fresh machine with only
# Python 3.11+, git and make: they create .venv and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,speed]'
	touch $(STAMP)

# Until the REST service exists: initialise the store (database and master key, first use only)
# and run the bundled example flow against a demo CRM on 127.0.0.1.
run: $(STAMP)
	$(BIN)/callout init
	$(BIN)/callout demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/callout
	@# migration files start with a digit, so the package walk skips them: check each by path
	for f in src/callout/store/migrations/versions/0*.py; do $(BIN)/mypy --strict $$f || exit 1; done

# PostgreSQL server binaries for the tests (tests/pg.py starts a throwaway server on a free
# loopback port and stops it after). The image usually ships them; a fresh machine gets them here.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

unit: $(STAMP) postgres
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/node_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
