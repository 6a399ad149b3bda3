# Two commands on a fresh machine (each creates .venv on first use, from the lock):
#   make demo    run the whole pipeline on embedded NATS + the reference backend
#   make test    run the test suite
# Also: make check (lint, format, types), make lock (refresh the lock),
#       make test-latest (the suite against the newest releases pyproject.toml allows),
#       make cluster (a local 3-node NATS cluster; prints the URLs for --nats; ARGS="--nodes 5").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/dev.txt
PIP    := $(BIN)/python -m pip --disable-pip-version-check
COMPILE = $(BIN)/uv pip compile pyproject.toml requirements/build.in --universal \
          --python-version 3.11 --generate-hashes --quiet
LATEST := .venv-latest
NODE   := interop/node/node_modules/.installed

.PHONY: demo test check lint types bench docs venv lock test-latest clean cluster

# Exact versions and hashes from the lock; the project itself without its
# dependencies and without build isolation, so nothing is resolved outside it.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/sniper demo $(ARGS)

cluster: $(STAMP)
	$(BIN)/sniper cluster $(ARGS)

test: $(STAMP) $(NODE)
	$(BIN)/python -m pytest $(ARGS)

# The Node bot of tests/interop (ajv, @asyncapi/parser, nats.js), from its lock;
# install scripts off (none is needed, and one only reports telemetry).
$(NODE): interop/node/package.json interop/node/package-lock.json
	npm ci --prefix interop/node --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NODE)

check: lint types

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bus_throughput.py
	$(BIN)/python bench/cycle_latency.py
	$(BIN)/python bench/flood.py
	$(BIN)/python bench/durable_signals.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/fallback.py

# The Prometheus config, alerting rules and their unit tests (deploy/prometheus); promtool comes
# from Debian's prometheus package (.ci/run installs it). `make test` runs the same checks.
.PHONY: rules
rules:
	cd deploy/prometheus && promtool check config prometheus.yml && promtool test rules rules_test.yml

docs: $(STAMP)
	$(BIN)/sniper schema > docs/message-schema.json
	$(BIN)/sniper schema --upstream > docs/upstream-schema.json
	$(BIN)/sniper asyncapi > docs/asyncapi.yaml

# Re-resolve within pyproject.toml's ranges (newest allowed releases), then
# reinstall from the new lock. Review the diff of requirements/ before committing.
lock: $(STAMP)
	$(COMPILE) --upgrade --extra dev -o requirements/dev.txt
	$(COMPILE) --upgrade -o requirements/runtime.txt
	$(MAKE) venv

# The suite against the newest releases pyproject.toml allows, no lock, in a
# venv of its own: an upgrade is a deliberate act with a known result.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -e '.[dev]'
	$(LATEST)/bin/python -m pip freeze --exclude-editable
	$(LATEST)/bin/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info interop/node/node_modules
