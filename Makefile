# Baton: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export BATON_DATABASE_URL ?= sqlite+aiosqlite:///./var/baton.db

.PHONY: run test bench openapi openapi-check migrate demo clean lint

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/baton migrate
	$(BIN)/baton demo --if-empty
	$(BIN)/baton serve --host 127.0.0.1 --port 8000

node_modules/.package-lock.json: package-lock.json
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error; fi

test: $(STAMP) node_modules/.package-lock.json
	$(BIN)/python -m tools.openapi --check
	$(BIN)/lint-imports --no-cache >/dev/null || $(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

openapi: $(STAMP)
	$(BIN)/python -m tools.openapi

$(VENV)/.bench-installed: $(STAMP) requirements-bench.lock
	$(BIN)/python -m pip install --quiet -r requirements-bench.lock
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

migrate: $(STAMP)
	$(BIN)/baton migrate

clean:
	rm -rf $(VENV) var .pytest_cache
