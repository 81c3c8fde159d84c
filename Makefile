# Two commands: `make run` (default workflow, offline) and `make test`.
# Each creates .venv and installs the pinned set the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test bench clean

$(STAMP): pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c envs/constraints.txt -e '.[test,bench]'
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES)

test: $(STAMP)
	$(BIN)/pytest -v -rs

bench: $(STAMP)
	$(BIN)/python benchmarks/attack_throughput.py

clean:
	rm -rf results/* .snakemake
