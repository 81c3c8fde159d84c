# Two commands: `make run` (default workflow, offline) and `make test`; `make report` writes
# the run's HTML report (results/report.html); `make lint` is CI's
# gate before the tests (.ci/lint). Each creates .venv and installs the pinned set the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
REPORT ?= results/report.html

.PHONY: run report test lint bench clean

$(STAMP): pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c envs/constraints.txt -e '.[test,bench,lint]'
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES)

# Self-contained HTML: every figure with its caption, the s~ table and the config.
report: run
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) --report $(REPORT)

test: $(STAMP)
	$(BIN)/pytest -v -rs

lint: $(STAMP)
	VENV=$(VENV) bash .ci/lint

bench: $(STAMP)
	$(BIN)/python benchmarks/attack_throughput.py

clean:
	rm -rf results/* .snakemake
