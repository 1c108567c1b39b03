# Two commands do all set-up on a fresh machine:
#   make run    installs into .venv and runs the demo gateway (no external services)
#   make test   installs into .venv (plus curl/openssl when missing) and runs every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-test system-tools spec fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,postgres]'

system-tools:
	@sh tools/install-system-tools.sh curl openssl

run: install
	$(BIN)/trio-gw demo

test: install-test system-tools
	$(BIN)/python -m pytest tests
	$(BIN)/python -m spec

spec: install-test system-tools
	$(BIN)/python -m spec

fuzz: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,fuzz]'
	$(BIN)/python fuzz/run --all --seconds 60

bench: install
	$(BIN)/python tools/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
