# The two commands of the README.  Both set up whatever is missing first (scripts/bootstrap.sh).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PRESET ?= quick

.PHONY: run test setup bench clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	@$(VENV)/bin/tmdflow run workflows/quick.yaml --preset $(PRESET)

test: setup
	@$(VENV)/bin/python -m pytest -q -ra --durations=10

bench: setup
	@$(VENV)/bin/python bench/bench_steps.py

clean:
	rm -rf tmdflow-runs .pytest_cache
