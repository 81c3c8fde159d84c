"""The tiny config through a real single-node SLURM (tests/slurm/setup_slurm.sh).

Skipped, with the reason printed, where SLURM cannot be set up (not root, no apt, a failed
install, a SLURM daemon this script did not start); under CI (CI=true) that fails instead.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, assert_same_results, setup_script_reason, skip_or_fail_on_ci, snakemake

SETUP = REPO / "tests" / "slurm" / "setup_slurm.sh"
TEARDOWN = REPO / "tests" / "slurm" / "teardown_slurm.sh"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    setup = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    if setup.returncode == 3:
        skip_or_fail_on_ci("SLURM end-to-end", setup_script_reason(setup, "SLURM cannot be set up"))
    assert setup.returncode == 0, setup.stdout + setup.stderr
    try:
        yield
    finally:
        subprocess.run(["bash", str(TEARDOWN)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny config with every round's attack split over one job per image."""
    workdir = tmp_path_factory.mktemp("slurm")
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["loop"]["images_per_job"] = 1
    configfile = workdir / "split.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))  # the networks in the config's order
    run = snakemake(
        workdir,
        "--executor",
        "slurm",
        "--profile",
        str(REPO / "workflow" / "profiles" / "slurm"),
        "--profile",
        str(REPO / "tests" / "slurm" / "profile"),
        "--workflow-profile",
        "none",
        configfile=str(configfile),
        timeout=2400,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    return workdir, run.stdout + run.stderr


def test_jobs_went_through_slurm(slurm_run: tuple[Path, str]) -> None:
    workdir, output = slurm_run
    job_ids = re.findall(r"SLURM jobid (\d+)", output)
    assert len(job_ids) >= 5, output[-3000:]
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert logs and {p.stem for p in logs} <= set(job_ids)  # every job log is named by its SLURM id
    assert any("rule_train_network" in p.parts for p in logs)  # logs nest by rule, then wildcards


def test_grouped_attack_jobs_shared_one_allocation(slurm_run: tuple[Path, str]) -> None:
    workdir, _ = slurm_run
    group_logs = list((workdir / ".snakemake" / "slurm_logs").glob("group_attacks*/*.log"))
    assert len(group_logs) == 1, group_logs  # 3 attack jobs, batches of up to 16
    text = group_logs[0].read_text()
    for index in range(3):
        assert f"image{index:04d}.nc" in text


def test_every_rounds_attack_ran_as_one_slurm_job_per_image(slurm_run: tuple[Path, str]) -> None:
    workdir, _ = slurm_run
    logs = (workdir / ".snakemake" / "slurm_logs").glob("rule_attack_round_part*/**/*.log")
    parts = {path.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0] for path in logs}
    assert parts == {f"rule_attack_round_part{k}" for k in (1, 2, 3)}, parts


def test_slurm_outputs_equal_a_local_run(slurm_run: tuple[Path, str], tiny_run: Path) -> None:
    """The same files, split three ways on SLURM and in one job a round locally."""
    workdir, _ = slurm_run
    assert_same_results(tiny_run, workdir / "results" / "tiny")
