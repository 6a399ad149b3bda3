# Two commands on a fresh machine (each creates .venv on first use):
#   make demo    run the whole pipeline on embedded NATS + the reference backend
#   make test    run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench docs venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/sniper demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bus_throughput.py
	$(BIN)/python bench/cycle_latency.py

docs: $(STAMP)
	$(BIN)/sniper schema > docs/message-schema.json
	$(BIN)/sniper schema --upstream > docs/upstream-schema.json

clean:
	rm -rf $(VENV) build *.egg-info
