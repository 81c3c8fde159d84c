"""Shared fixtures: one end-to-end run of the tiny config, reused by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results folder of a local run of config/tiny.yaml (2 cores)."""
    workdir = tmp_path_factory.mktemp("tiny")
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return workdir / "results" / "tiny"
