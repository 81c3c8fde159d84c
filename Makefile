# Two commands: `make run` (default workflow, offline) and `make test` (everything CI runs);
# `make check` is the quick tier (unit tests and dry runs, no end-to-end run); `make report`
# writes the run's HTML report (results/report.html); `make lint` is CI's gate before the
# tests (.ci/lint). Each creates .venv and installs the pinned set the first time (with uv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
BENCH_STAMP := $(VENV)/.installed-bench
CORES ?= 2
REPORT ?= results/report.html

.PHONY: run report test check lint bench clean

# uv installs the pinned set (about 5 GB with the CUDA libraries of torch) in a third of the time pip
# takes; --compile-bytecode as pip does, else every job compiles torch again where
# PYTHONDONTWRITEBYTECODE is set.
# `make run` and `make report` install what the workflow needs; test, check and lint add the
# test and lint tools; `make bench` adds torchattacks (the bench extra).
$(RUN_STAMP): pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c envs/constraints.txt uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c envs/constraints.txt -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c envs/constraints.txt -e '.[test,lint]'
	touch $@

# torchattacks 3.5.1 declares requests~=2.25.1 but never imports requests; the pinned set has
# requests >= 2.32 (snakedeploy needs it; older ones carry CVE-2023-32681 and CVE-2024-35195).
# The pins given as overrides too replace that declaration with the set's requests.
$(BENCH_STAMP): $(RUN_STAMP)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c envs/constraints.txt \
		--overrides envs/constraints.txt -e '.[bench]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES)

# Self-contained HTML: every figure with its caption, the s~ table and the config.
report: run
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) --report $(REPORT)

test: $(STAMP)
	$(BIN)/pytest -v -rs --durations=20

# The quick tier: every test not marked slow (the slow ones run the workflow end to end).
check: $(STAMP)
	$(BIN)/pytest -q -rs -m "not slow"

lint: $(STAMP)
	VENV=$(VENV) bash .ci/lint

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/attack_throughput.py

clean:
	rm -rf results/* .snakemake
