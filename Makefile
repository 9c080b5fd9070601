# Every command creates .venv and installs the project with its extras on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo check lint typecheck test postgres chromium docs docs-serve bench format clean quick-sql

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs,piper,espeak,audio,kokoro-test,postgres,web,browser-test,django]'
	touch $(STAMP)

## demo: speech and audio jobs end to end on the default SQLite file (data/queue.db)
demo: $(STAMP)
	$(BIN)/python -m tts.demo

## check: everything CI runs (lint, format check, mypy --strict, the strict docs build, the test suite)
check: lint typecheck docs test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) postgres chromium
	$(BIN)/pytest

## postgres: the PostgreSQL server programs for the tests' throwaway servers (tests/postgres_server.py):
## a quick look when they are there; when not, as root, Debian's postgresql package, without its cluster
postgres: $(STAMP)
	PYTHON=$(BIN)/python sh scripts/ensure-postgres.sh

## chromium: the headless browser of the dashboard's tests (tests/test_web_browser.py): a quick
## look when chromium and chromedriver are there; when not, as root, Debian's two packages
chromium:
	sh scripts/ensure-chromium.sh

## docs: build the documentation site into site/, strictly (a broken link, a missing reference
## or any warning fails); the build needs no network
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## docs-serve: serve the site on http://127.0.0.1:8000, rebuilding on every change
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

bench: $(STAMP)
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_runtime.py
	$(BIN)/python bench/bench_contention.py
	$(BIN)/python bench/bench_producers.py
	$(BIN)/python bench/bench_cli.py

## quick-sql: compile the read commands' statements for SQLite again (after a change to one)
quick-sql: $(STAMP)
	$(BIN)/python -m worker.storage.sqlite.quick_statements

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
