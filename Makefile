# Two commands do all set-up on a fresh machine:
#   make run    installs into .venv from the lock and runs the demo gateway (no external services)
#   make test   installs into .venv from the lock (plus curl/openssl when missing) and runs every test
#
# Dependencies are locked with hashes in requirements/*.txt (made by uv from pyproject.toml's
# ranges; `make lock` regenerates them). Installs take exactly what the lock says, then the
# project itself with --no-deps; tools/check_lock.py fails in one line when the lock no longer
# satisfies pyproject.toml.
# The interpreter .venv is made from: the distribution's CPython 3.11 when the machine has one
# (Debian's /usr/bin/python3.11: libpython linked into the executable, unlike a default pyenv
# build; it ran the gateway's keep-alive requests ~15 % faster per CPU-second here, see
# docs/performance.md "The interpreter"), else python3. `make ... PYTHON=...` chooses another;
# an existing .venv keeps the interpreter it was made from (remove it to change).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
# -qq: errors only (a machine's pip.conf may name index paths that do not exist; the lock decides anyway)
PIP_LOCKED := $(BIN)/pip install -qq --require-hashes
INSTALL_SELF := $(BIN)/pip install -qq --no-deps --no-build-isolation -e .

.PHONY: run test install install-test install-fuzz system-tools spec fuzz bench lock check-lock clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	@echo "installing trio-gw into $(VENV) from requirements/run.txt"
	@$(PIP_LOCKED) -r requirements/run.txt
	@$(INSTALL_SELF)

install-test: $(BIN)/python
	@echo "installing trio-gw into $(VENV) from requirements/test.txt"
	@$(PIP_LOCKED) -r requirements/test.txt
	@$(BIN)/python tools/check_lock.py
	@$(INSTALL_SELF)

install-fuzz: $(BIN)/python
	@echo "installing trio-gw into $(VENV) from requirements/fuzz.txt"
	@$(PIP_LOCKED) -r requirements/fuzz.txt
	@$(INSTALL_SELF)

check-lock: $(BIN)/python
	$(BIN)/python tools/check_lock.py

system-tools:
	@sh tools/install-system-tools.sh curl openssl sslscan pebble chromium postgresql

run: install
	@$(BIN)/trio-gw demo

test: install-test system-tools
	$(BIN)/python -m pytest tests
	$(BIN)/python -m spec

spec: install-test system-tools
	$(BIN)/python -m spec

fuzz: install-fuzz
	$(BIN)/python fuzz/run --all --seconds 60

bench: install
	$(BIN)/python tools/bench.py

# Bring every lock file in line with pyproject.toml, keeping the pins that still fit;
# `make lock UPGRADE=1` moves every package to its newest release inside the ranges.
LOCK_UPGRADE := $(if $(UPGRADE),--upgrade,)
lock: $(BIN)/python
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip compile -q $(LOCK_UPGRADE) --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command "make lock" pyproject.toml requirements/build.in -o requirements/run.txt
	$(BIN)/uv pip compile -q $(LOCK_UPGRADE) --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command "make lock" pyproject.toml requirements/build.in \
	    --extra test --extra postgres -o requirements/test.txt
	$(BIN)/uv pip compile -q $(LOCK_UPGRADE) --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command "make lock" pyproject.toml requirements/build.in \
	    --extra test --extra fuzz -o requirements/fuzz.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
