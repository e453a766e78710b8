# make run   serves the API on 127.0.0.1:5000 (HOST, PORT, WORKERS override)
# make bench measures throughput and latency (see bench/README.md)
# make test  runs the tests against a throwaway MariaDB database (and a throwaway cluster)
# make cluster starts nginx, 2 app instances, HAProxy, 3 Galera nodes, Redis (scripts/cluster)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint format system clean cluster

run: $(VENV)/.runtime system
	$(BIN)/flask --app app init-db
	$(BIN)/gunicorn -c gunicorn.conf.py 'app:create_app()'

test: $(VENV)/.dev
	START_REDIS=1 CLUSTER=1 CLIENT_TOOLS=1 ./scripts/prepare-system
	$(MAKE) --no-print-directory node_modules/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.dev
	./scripts/prepare-system
	$(BIN)/python bench/run.py

# scripts/cluster status|down [--dir DIR] inspect and stop it.
cluster: $(VENV)/.runtime
	CLUSTER=1 ./scripts/prepare-system
	./scripts/cluster up

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

# newman and playwright-core as package-lock.json pins them (tests/test_clients.py).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
