#!/usr/bin/env bash
# Written by envs/generate.py. Snakemake runs this once in the new environment figures.yaml:
# it installs the neuroattack package (its dependencies are the environment's pins).
# NEUROATTACK_SOURCE: the repository's folder (workflow/Snakefile sets it for a local copy of
# the workflow; installed editable, as `make` does) or a pip requirement such as a git URL.
set -euo pipefail
source="${NEUROATTACK_SOURCE:?the neuroattack repository or a pip requirement of it (README.md)}"
if [ -d "$source" ]; then
    python -m pip install --no-deps --editable "$source"
else
    python -m pip install --no-deps "$source"
fi
