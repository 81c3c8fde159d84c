"""The workflow as the Snakemake workflow catalog expects it: conda environments generated from
envs/constraints.txt and named by every rule, config/README.md covering the schema, the catalog's
usage file and the CI file for the code host. (Creating the environments needs a conda channel;
tests/test_module.py runs the workflow as a module.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from workflow_helpers import NO_SLURM_CONTROLLER

REPO = Path(__file__).resolve().parent.parent
ENVS = REPO / "envs"


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ENVS / "constraints.txt").read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name:
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_environments_are_what_generate_writes_from_constraints() -> None:
    check = subprocess.run(
        [sys.executable, str(ENVS / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_pin_of_every_environment_is_the_constraints_version() -> None:
    pins = constraint_pins()
    files = sorted(ENVS.glob("*.yaml"))
    assert {f.stem for f in files} == {"download", "compute", "figures"}
    for path in files:
        env = yaml.safe_load(path.read_text())
        conda = [d for d in env["dependencies"] if isinstance(d, str)]
        assert "python =3.11" in conda and "pip" in conda, path
        (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
        names = {p.split("==")[0].lower() for p in pip}
        if path.stem == "compute":
            assert "torch" in names, path
        else:  # download and figure jobs never load torch: no torch, no CUDA wheels
            gpu = {n for n in names if n in {"torch", "torchvision", "triton"} or n.startswith(("nvidia-", "cuda-"))}
            assert gpu == set(), (path.name, sorted(gpu))
        for requirement in pip:
            name, version = requirement.split(";")[0].strip().split("==")
            assert pins[name.lower().replace("_", "-")] == version, (path.name, requirement)
        deploy = path.with_suffix(".post-deploy.sh")
        assert "pip install --no-deps" in deploy.read_text() and deploy.stat().st_mode & 0o111, deploy


def rule_blocks() -> dict[str, str]:
    """{rule name: its body} of every rule in workflow/rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = path.read_text()
        starts = list(re.finditer(r"^(\s*)rule (\w+):\n", text, re.MULTILINE))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            blocks[match.group(2)] = text[match.end() : end]
    return blocks


def test_every_rule_names_an_existing_environment() -> None:
    blocks = rule_blocks()
    assert len(blocks) > 25
    used = set()
    for name, body in blocks.items():
        match = re.search(r"^\s*conda:\n\s*\"\.\./\.\./envs/(\w+)\.yaml\"", body, re.MULTILINE)
        assert match, f"rule {name} has no conda: directive"
        assert (ENVS / f"{match.group(1)}.yaml").is_file(), name
        used.add(match.group(1))
    assert used == {"download", "compute", "figures"}
    assert "rule all:" in (REPO / "workflow/Snakefile").read_text()  # the only rule without one: no job


def test_lint_allow_list_is_empty() -> None:
    lines = (REPO / "workflow/lint-allowed.txt").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == []


def schema_keys(schema: dict, prefix: str = "") -> list[str]:  # type: ignore[type-arg]
    keys = []
    for name, spec in schema.get("properties", {}).items():
        keys.append(prefix + name)
        if not prefix and isinstance(spec, dict):
            keys += schema_keys(spec, f"{name}.")
    return keys


def test_config_readme_documents_every_schema_key() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    text = (REPO / "config/README.md").read_text()
    keys = schema_keys(schema)
    assert len(keys) > 60
    missing = []
    for key in keys:
        top, _, sub = key.rpartition(".")
        # `top.sub`, or `sub` in a row of the section of `top` (`training.epochs`, `batch_size`)
        section = text.split(f"(`{top}`)", 1)[1].split("\n## ", 1)[0] if top else text
        if f"`{key}`" not in text and not re.search(rf"`(\w+\.)?{re.escape(sub)}`", section):
            missing.append(key)
    assert missing == []
    assert "[`config/README.md`](config/README.md)" in (REPO / "README.md").read_text()


def test_catalog_file_states_flags_deployment_and_report() -> None:
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["mandatory-flags"]["desc"] and "flags" in usage["mandatory-flags"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True


def test_ci_file_runs_ci_run_on_push_and_pull_request() -> None:
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    triggers = ci.get("on", ci.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)
    assert any(s.get("run") == "bash .ci/run" for s in steps)


# No conda and no conda channel can be reached here. Snakemake's `--sdm conda --dry-run` asks
# conda three read-only questions before it plans the environments; this stand-in answers those
# and refuses every other command, so a dry run that tried to create anything would fail.
CONDA_STAND_IN = """#!/usr/bin/env bash
case "$*" in
  "--version") echo "conda 24.11.0";;
  "info --json") echo '{"conda_version": "24.11.0", "platform": "linux-64", "root_prefix": "PREFIX",
    "conda_prefix": "PREFIX", "active_prefix": null, "envs_dirs": ["PREFIX/envs"], "pkgs_dirs": ["PREFIX/pkgs"],
    "channels": ["conda-forge"]}';;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}, "success": true}';;
  *) echo "conda stand-in: refused: $*" >&2; exit 1;;
esac
"""


def test_a_conda_dry_run_plans_every_environment(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    conda = bin_dir / "conda"
    conda.write_text(CONDA_STAND_IN.replace("PREFIX", str(tmp_path / "conda")))
    conda.chmod(0o755)
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path / "run")]
    command += ["--configfile", str(REPO / "config/paper.yaml"), "--sdm", "conda", "--dry-run", "--cores", "1"]
    path = f"{bin_dir}:{NO_SLURM_CONTROLLER}:{Path(sys.executable).parent}:/usr/bin:/bin"
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env={"PATH": path}, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    planned = set(re.findall(r"Conda environment \S*/envs/(\w+)\.yaml will be created", output))
    assert planned == {"download", "compute", "figures"}, output[-3000:]
    assert "refused" not in output
