"""The workflow used inside another workflow, as a user deploys it: an empty folder with a
config/config.yaml of its own and a workflow/Snakefile whose `module` directive points at this
repository's workflow/Snakefile (what `snakedeploy deploy-workflow` writes, with a local path in
place of github(...): snakedeploy is not installed here, its requests>=2.32 conflicts with the
bench extra's torchattacks pin). The tiny config runs end to end from there."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import deploy, run_in

from neuroattack import io


def test_module_plans_the_whole_workflow_under_the_users_prefix(tmp_path: Path) -> None:
    deploy(tmp_path)
    dry = run_in(tmp_path, "--dry-run", "--cores", "2")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "neuroattack_attack_units" in dry.stdout and "neuroattack_all" in dry.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_module_runs_the_tiny_config_end_to_end(module_run: Path) -> None:
    results = module_run / "results/tiny"
    for figure in (1, 2, 3, 4, 5, 6):
        assert (results / f"figures/figure{figure}.png").stat().st_size > 10_000
    assert io.read_dataset(results / "sensitivity/sensitivity.nc").sizes
    # the module run is complete: a second invocation has nothing to do
    again = run_in(module_run, "--dry-run", "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr
