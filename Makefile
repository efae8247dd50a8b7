# The two commands of the README: `make run` (the portal on embedded defaults) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install emulator

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Development defaults: DEBUG on (a SECRET_KEY is generated into var/), SQLite, the Cloudflare emulator.
run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py runserver $${PORT:-127.0.0.1:8000}

emulator: $(STAMP)
	$(BIN)/python -m cloudflare.emulator --host 127.0.0.1 --port $${EMULATOR_PORT:-8787}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
