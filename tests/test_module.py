"""The workflow used inside another workflow, as a user deploys it: an empty folder with a
config/config.yaml of its own and a workflow/Snakefile whose `module` directive points at this
repository's workflow/Snakefile (what `snakedeploy deploy-workflow` writes, with a local path in
place of github(...): snakedeploy is not installed here, its requests>=2.32 conflicts with the
bench extra's torchattacks pin). The tiny config runs end to end from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_helpers import REPO, SNAKEMAKE

from neuroattack import io

USER_SNAKEFILE = """\
configfile: "config/config.yaml"


module neuroattack:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from neuroattack as neuroattack_*
"""


def deploy(folder: Path) -> None:
    """The user's workflow in `folder`: their config (a copy of the tiny one) and Snakefile."""
    (folder / "config").mkdir(parents=True)
    shutil.copy(REPO / "config/tiny.yaml", folder / "config/config.yaml")
    (folder / "workflow").mkdir()
    (folder / "workflow/Snakefile").write_text(USER_SNAKEFILE.format(snakefile=REPO / "workflow/Snakefile"))


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    # No --snakefile, no --directory: snakemake finds workflow/Snakefile in the folder it runs in.
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=folder, capture_output=True, text=True, timeout=1800, env=env, check=False
    )


def test_module_plans_the_whole_workflow_under_the_users_prefix(tmp_path: Path) -> None:
    deploy(tmp_path)
    dry = run_in(tmp_path, "--dry-run", "--cores", "2")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "neuroattack_attack_image" in dry.stdout and "neuroattack_all" in dry.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_module_runs_the_tiny_config_end_to_end(tmp_path: Path) -> None:
    deploy(tmp_path)
    start = time.monotonic()
    run = run_in(tmp_path, "--cores", "2")
    print(f"module run of the tiny config: {time.monotonic() - start:.0f} s")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = tmp_path / "results/tiny"
    for figure in (1, 2, 3, 4, 5, 6):
        assert (results / f"figures/figure{figure}.png").stat().st_size > 10_000
    assert io.read_dataset(results / "sensitivity/sensitivity.nc").sizes
    # the module run is complete: a second invocation has nothing to do
    again = run_in(tmp_path, "--dry-run", "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr
