# The two commands of the README: `make run` (the portal on embedded defaults) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install emulator test-js build-js

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

install: $(STAMP)

# Development defaults: DEBUG on (a SECRET_KEY is generated into var/), SQLite, the Cloudflare emulator,
# Celery on the filesystem broker under var/ (or Redis with REDIS_URL). Starts web, worker and beat.
run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.dev start

emulator: $(STAMP)
	$(BIN)/python -m cloudflare_emulator --host 127.0.0.1 --port $${EMULATOR_PORT:-8787}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser bundle's own tests (node --test); skipped with a note where Node is not installed.
test-js: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		cd frontend && npm ci --no-audit --no-fund --silent && PYTHON=../$(BIN)/python npm test; \
	else echo "npm not found: skipping the frontend tests (frontend/test)"; fi

# Rebuild static/js/new-certificate.js after changing frontend/src (the built bundle is committed).
build-js:
	cd frontend && npm ci --no-audit --no-fund && npm run build

test: lint test-js
	$(BIN)/pytest
