# Two commands (see README): `make serve` and `make test`. Everything else is what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test check pytest bench bench-growth install clean

## Set everything up (virtualenv, packages, embedded PostgreSQL, migrations) and serve the API.
serve: $(INSTALLED)
	$(BIN)/taskapi serve --host $(HOST) --port $(PORT)

## Set everything up and run the whole suite: lint, format, types, tests.
test: check pytest

check: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: $(INSTALLED)
	$(BIN)/pytest

## The load benchmark (wrk and pgbench on the same SQL; docs/PERFORMANCE.md): writes
## docs/bench-latest.md. Not part of `make test`; a smoke run of it is.
bench: $(INSTALLED)
	$(BIN)/python -m bench

## List and get at 1,000,000 tasks, then at 10,000,000: writes docs/bench-growth.md.
bench-growth: $(INSTALLED)
	$(BIN)/python -m bench --growth

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; run make with PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
