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
# var/development.env (DEBUG=true) lets the README's `.venv/bin/python manage.py ...` commands use the same
# development settings in this checkout (manage.py reads it; the environment wins).
DEV_ENV := var/development.env

$(DEV_ENV):
	mkdir -p var
	printf '# Written by make run: development settings for manage.py in this checkout. Delete for production.\nDEBUG=true\n' > $(DEV_ENV)

run: $(STAMP) $(DEV_ENV)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.dev start

emulator: $(STAMP)
	$(BIN)/python -m cloudflare_emulator --host 127.0.0.1 --port $${EMULATOR_PORT:-8787}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy's Django plugin imports the settings; DEBUG=true lets them load without a SECRET_KEY.
	DEBUG=true $(BIN)/mypy
	$(BIN)/vulture

# The browser bundle's own tests (node --test); skipped with a note where Node is not installed.
test-js: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		cd frontend && npm ci --no-audit --no-fund --silent && PYTHON=../$(BIN)/python npm test; \
	else echo "npm not found: skipping the frontend tests (frontend/test)"; fi

# Rebuild the page scripts in static/js/ after changing frontend/src (the built bundles are committed).
build-js:
	cd frontend && npm ci --no-audit --no-fund && npm run build

test: lint test-js
	$(BIN)/pytest
