"""Running the workflow from tests: snakemake in a subprocess, in a temporary folder; and
the one rule for a test that cannot run here (skip it, printing why; fail it under CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from neuroattack import io

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# Put first on PATH for runs that do not submit to SLURM (see the script's comment).
NO_SLURM_CONTROLLER = REPO / "tests" / "no_slurm_controller"


def run_environment(*, slurm: bool = False) -> dict[str, str]:
    """The environment of a snakemake run from a test: this environment's python and snakemake
    first on PATH (jobs, local or on SLURM, must find them), unbuffered output; unless the run
    submits to SLURM, an scontrol that fails at once, so that a SLURM client left without its
    controller does not hold every command for 10 s."""
    front = (
        [str(Path(sys.executable).parent)] if slurm else [str(NO_SLURM_CONTROLLER), str(Path(sys.executable).parent)]
    )
    # a stand-in scontrol inherited from the caller's PATH would hide the real controller's settings
    inherited = [
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if Path(entry).name != NO_SLURM_CONTROLLER.name
    ]
    path = os.pathsep.join([*front, *inherited])
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}


def snakemake_command(
    workdir: Path, *args: str, configfile: str | None = "config/tiny.yaml"
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the repository's Snakefile in `workdir`."""
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile:
        command += ["--configfile", str(REPO / configfile)]
    return [*command, *args], run_environment(slurm="slurm" in args)


def snakemake(
    workdir: Path, *args: str, configfile: str | None = "config/tiny.yaml", timeout: int = 1800
) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile with `workdir` as working directory."""
    command, env = snakemake_command(workdir, *args, configfile=configfile)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def assert_same_results(first: Path, second: Path) -> None:
    """Both folders hold the same netCDF files with identical values (global attrs,
    which carry timestamps and paths, aside)."""
    files = sorted(p.relative_to(first) for p in first.rglob("*.nc"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.nc"))
    for relative in files:
        a, b = io.read_dataset(first / relative), io.read_dataset(second / relative)
        a.attrs, b.attrs = {}, {}
        assert a.identical(b), relative


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run, as {rule: count}."""
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts: dict[str, int] = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def on_ci() -> bool:
    """Whether the tests run on CI: its runner sets CI=true (any value but empty, 0, false, no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail_on_ci(what: str, reason: str) -> NoReturn:
    """`what` cannot run here because of `reason`: skip it, printing why, or fail under CI,
    where every test must run (CI runs as root with apt, so a failed install is a fault)."""
    if on_ci():
        pytest.fail(f"{what} cannot run on CI (CI={os.environ['CI']}): {reason}", pytrace=False)
    print(f"SKIP {what}: {reason}")
    pytest.skip(f"{what}: {reason}")


def setup_script_reason(setup: subprocess.CompletedProcess[str], default: str) -> str:
    """The reason a tests/*/setup_*.sh gave for exit code 3: the last line of its stderr."""
    lines = setup.stderr.strip().splitlines()
    return lines[-1] if lines else default


# --- the workflow used as a module, as a user deploys it (tests/test_module.py) ---------

SNAKEDEPLOY = Path(sys.executable).parent / "snakedeploy"
MODULE = "neuroattack"  # snakedeploy names the module after the repository


def clone_repository(into: Path) -> Path:
    """A git clone of this repository in `into`/neuroattack: its committed tree, as a user's
    deployment gets it (uncommitted changes stay out; a shallow CI checkout clones too)."""
    clone = into / MODULE
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, capture_output=True, text=True)
    return clone


def snakedeploy(clone: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`snakedeploy deploy-workflow <repository> <folder> --commit <its HEAD>`, as the catalog tells
    users (who name a release with --tag; a local source checks out nothing, so the clone's HEAD)."""
    if not SNAKEDEPLOY.exists():
        skip_or_fail_on_ci(
            "deploying the workflow", f"snakedeploy is not installed in {SNAKEDEPLOY.parent} (the test extra)"
        )
    # snakedeploy takes any source whose text holds "github" or "gitlab" for a remote one
    assert "github" not in str(clone) and "gitlab" not in str(clone), clone
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    command = [str(SNAKEDEPLOY), "deploy-workflow", str(clone), str(folder), "--commit", head.stdout.strip()]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=run_environment(), check=False)


def point_module_at(clone: Path, folder: Path) -> None:
    """Give the module directive the clone's Snakefile. For a local source snakedeploy (0.17)
    writes the path inside the repository, "workflow/Snakefile", without the repository's
    location, and Snakemake reads a module's relative path against the including Snakefile's
    folder (folder/workflow/workflow/Snakefile, which does not exist). From github(...) or a
    URL no rewrite is needed; this one line is all that is changed."""
    snakefile = folder / "workflow/Snakefile"
    text = snakefile.read_text()
    written = '"workflow/Snakefile"'
    assert text.count(written) == 1, text
    snakefile.write_text(text.replace(written, f'"{clone / "workflow/Snakefile"}"'))


def deploy(into: Path) -> Path:
    """The user's workflow, deployed with snakedeploy from a clone of this repository, in
    `into`/deployed; the user's configuration is the tiny config (their config/config.yaml).
    Returns the deployed folder."""
    clone, folder = clone_repository(into), into / "deployed"
    deployed = snakedeploy(clone, folder)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    point_module_at(clone, folder)
    shutil.copy(folder / "config/tiny.yaml", folder / "config/config.yaml")
    return folder


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = run_environment()
    # No --snakefile, no --directory: snakemake finds workflow/Snakefile in the folder it runs in.
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=folder, capture_output=True, text=True, timeout=1800, env=env, check=False
    )
