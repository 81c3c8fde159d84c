"""Shared fixtures: the end-to-end runs of the tiny config, each made once and reused by several
test files (tests that change a run work on a copy of it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from workflow_helpers import deploy, run_in, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results folder of a local run of config/tiny.yaml (2 cores)."""
    workdir = tmp_path_factory.mktemp("tiny")
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return workdir / "results" / "tiny"


@pytest.fixture(scope="session")
def module_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's folder, deployed with snakedeploy, after a run of config/tiny.yaml through the
    workflow used as a module (tests/test_module.py); a second run from scratch, independent
    of `tiny_run`."""
    folder = deploy(tmp_path_factory.mktemp("module"))
    start = time.monotonic()
    run = run_in(folder, "--cores", "2")
    print(f"module run of the tiny config: {time.monotonic() - start:.0f} s")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return folder
