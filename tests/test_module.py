"""The workflow used inside another workflow, deployed as the Snakemake workflow catalog tells
users: `snakedeploy deploy-workflow` from a git clone of this repository into an empty folder
writes workflow/Snakefile (a `module` directive using every rule) and copies config/; the user
puts the tiny config in config/config.yaml. One line is rewritten: snakedeploy gives a local
source's module a path that Snakemake cannot find (tests/workflow_helpers.py, point_module_at).
The tiny config plans, and runs end to end, from the deployed folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import MODULE, REPO, deploy, job_counts, run_in

from neuroattack import io


def test_snakedeploy_writes_the_module_and_the_config_and_the_tiny_config_plans(tmp_path: Path) -> None:
    folder = deploy(tmp_path)
    snakefile = (folder / "workflow/Snakefile").read_text()
    assert 'configfile: "config/config.yaml"' in snakefile
    assert f"module {MODULE}:" in snakefile and f"use rule * from {MODULE}" in snakefile
    assert f'"{tmp_path / MODULE / "workflow/Snakefile"}"' in snakefile
    copied = sorted(p.relative_to(folder / "config") for p in (folder / "config").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(REPO / "config") for p in (REPO / "config").rglob("*") if p.is_file())
    assert (folder / "config/config.yaml").read_text() == (REPO / "config/tiny.yaml").read_text()
    dry = run_in(folder, "--dry-run", "--cores", "2")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    counts = job_counts(dry.stdout)
    assert counts["all"] == 1 and counts["attack_units"] >= 1, counts
    assert not (folder / "results").exists()


@pytest.mark.slow
def test_module_runs_the_tiny_config_end_to_end(module_run: Path) -> None:
    results = module_run / "results/tiny"
    for figure in (1, 2, 3, 4, 5, 6):
        assert (results / f"figures/figure{figure}.png").stat().st_size > 10_000
    assert io.read_dataset(results / "sensitivity/sensitivity.nc").sizes
    # the module run is complete: a second invocation has nothing to do
    again = run_in(module_run, "--dry-run", "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr
