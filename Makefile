# make run   serves the API on 127.0.0.1:5000 (HOST, PORT, WORKERS override)
# make bench measures throughput and latency (see bench/README.md)
# make test  runs the tests against a throwaway MariaDB database (and a throwaway cluster)
# make test-fast runs the unit and db lanes only: MariaDB, no root, Node, Chromium or cluster
# make cluster starts nginx, 2 app instances, HAProxy, 3 Galera nodes, Redis (scripts/cluster)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast bench lint format system clean cluster

run: $(VENV)/.runtime system
	$(BIN)/flask --app app init-db
	$(BIN)/gunicorn -c gunicorn.conf.py 'app:create_app()'

# REQUIRE_ALL_TOOLS=1: a test whose tool (Node, Chromium) is missing fails instead of
# skipping (tests/support.py require_tool), so that CI cannot pass by skipping it.
test: $(VENV)/.dev
	START_REDIS=1 CLUSTER=1 CLIENT_TOOLS=1 ./scripts/prepare-system
	$(MAKE) --no-print-directory node_modules/.installed
	REQUIRE_ALL_TOOLS=1 $(BIN)/python -m pytest

# The inner loop (markers in pyproject.toml). MariaDB must answer: when it does, nothing
# here needs root; when not, scripts/prepare-system starts it as make test would. The
# fuzzer tries 20 examples per operation here, 100 in make test.
test-fast: $(VENV)/.dev
	@mysqladmin --user="$${MYSQL_USER:-root}" ping >/dev/null 2>&1 || ./scripts/prepare-system
	FUZZ_EXAMPLES=20 $(BIN)/python -m pytest -m "unit or db"

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

# prepare-system in the recipe, not as a prerequisite: it then runs when the venv is built
# (mysqlclient compiles against libmariadb-dev), not on every make lint or make test-fast.
$(VENV)/.runtime: requirements.txt
	./scripts/prepare-system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt
	./scripts/prepare-system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# newman and playwright-core as package-lock.json pins them (tests/test_clients.py).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
