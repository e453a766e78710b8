# make run   serves the API on 127.0.0.1:5000 (HOST, PORT, WORKERS override)
# make test  runs the tests against a throwaway MariaDB database
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 2

.PHONY: run test lint format system clean

run: $(VENV)/.runtime system
	$(BIN)/flask --app app init-db
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) 'app:create_app()'

test: $(VENV)/.dev
	START_REDIS=1 ./scripts/prepare-system
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system:
	./scripts/prepare-system

$(VENV)/.runtime: requirements.txt | system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
