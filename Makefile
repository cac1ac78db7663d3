# The two commands: `make run` and `make test`. Both work on a fresh machine with only
# Python 3.11+, git and make: they create .venv and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit unit-pure bench clean postgres compiler compiled

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,speed]'
	touch $(STAMP)

# The call path compiled to C by mypyc (part of mypy, from these same typed sources) into a copy
# of the package: what `make run`, the suite and the benchmarks import (PYTHONPATH). A request
# through an integration node costs about a tenth fewer instructions than with the same modules
# interpreted (bench/RESULTS.md). src/ stays pure Python, so an edit is never shadowed by a stale
# build: the copy is rebuilt when any file under src/callout changes. The list: the modules that
# every call and run go through.
COMPILED := build/compiled
HOT_MODULES := template cases mapping scrub _jsontext engine/call engine/context engine/runner \
	engine/engine engine/integration_mode engine/http_mode engine/nodes engine/auth \
	engine/wire service/history_process transport _hop guard _guard_syntax _body _redirects
SOURCES := $(shell find src/callout -type f -not -path '*/__pycache__/*')
WITH_COMPILED := PYTHONPATH=$(CURDIR)/$(COMPILED)

# A C compiler for mypyc; a fresh machine without one gets it here.
compiler:
	@command -v cc >/dev/null 2>&1 || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev; }

$(COMPILED)/.built: $(STAMP) $(SOURCES) | compiler
	rm -rf $(COMPILED) && mkdir -p $(COMPILED)
	cp -r src/callout $(COMPILED)/callout
	cd $(COMPILED) && $(CURDIR)/$(BIN)/mypyc $(HOT_MODULES:%=callout/%.py) >mypyc.log 2>&1 \
	  || { tail -40 mypyc.log; exit 1; }
	touch $@

compiled: $(COMPILED)/.built

# Until the REST service exists: initialise the store (database and master key, first use only)
# and run the bundled example flow against a demo CRM on 127.0.0.1.
run: $(COMPILED)/.built
	$(WITH_COMPILED) $(BIN)/callout init
	$(WITH_COMPILED) $(BIN)/callout demo

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

# The whole suite against the compiled build (what runs), then against src/ as it is written
# (what an editor's test run imports).
unit: $(COMPILED)/.built postgres
	$(WITH_COMPILED) $(BIN)/python -c 'import callout.engine.runner as m; assert m.__file__.endswith(".so"), m.__file__'
	$(WITH_COMPILED) $(BIN)/pytest

unit-pure: $(STAMP) postgres
	$(BIN)/pytest

# The two passes share nothing (each starts its own PostgreSQL, servers and writer processes on
# free ports and in its own temporary directories), so they run side by side, each one's output
# printed whole when it ends: the suite takes about the time of the longer pass.
test: lint typecheck
	$(MAKE) --no-print-directory -j2 --output-sync=target unit unit-pure

bench: $(COMPILED)/.built
	$(WITH_COMPILED) $(BIN)/python bench/node_throughput.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
