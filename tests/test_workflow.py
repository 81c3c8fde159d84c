"""The workflow as users run it: dry-runs, config validation, and the tiny config end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from workflow_helpers import REPO, assert_same_results, job_counts, snakemake

from neuroattack import io

CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("configfile", CONFIGS)
def test_dry_run_of_every_config(tmp_path: Path, configfile: str) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=configfile)
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    config = yaml.safe_load((REPO / configfile).read_text())
    assert counts["figure1"] == 1 and counts["sensitivity"] == 1
    assert counts["attack_image"] == config["attack"]["images"]


def test_default_dry_run_job_counts(tmp_path: Path) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile="config/config.yaml")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    counts = job_counts(run.stdout)
    assert counts["train_network"] == len(config["networks"]) + 1  # + the brain's network
    assert counts["features"] == len(config["networks"])


CHECKPOINT = {"url": "file:///m/x.ckpt"}


def write_config(tmp_path: Path, change: dict, base: str = "config/tiny.yaml") -> str:  # type: ignore[type-arg]
    config = yaml.safe_load((REPO / base).read_text())
    for dotted, value in change.items():
        *parents, key = dotted.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"attack.stepz": 3}, "stepz"),
        ({"attack.restarts": 0}, "restarts"),
        ({"attack.eps": "large"}, "eps"),
        ({"surrogate.network": "nonexistent"}, "nonexistent"),
        ({"networks.standard.norm": "linf"}, "downloaded networks"),
        ({"networks.ckpt": {"eps": 4.0, "norm": "linf", "checkpoint": CHECKPOINT}}, "maximum of 1"),
        ({"networks.ckpt": {"eps": 3.0, "architecture": "vgg16", "checkpoint": CHECKPOINT}}, "vgg16"),
        ({"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "urls": ["file:///m/x.ckpt"]}}}, "each of"),
        ({"networks.ckpt": {"eps": 3.0, "checkpoint": {"urls": []}}}, "non-empty"),
        ({"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "sha1": None, "sha256": None}}}, "sha256"),
        ({"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "name": "a.ckpt"}}}, "'name' was unexpected"),
    ],
)
def test_bad_config_stops_with_a_message_naming_the_key(tmp_path: Path, change: dict, named: str) -> None:  # type: ignore[type-arg]
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=write_config(tmp_path, change))
    assert run.returncode != 0
    assert named in run.stdout + run.stderr


def test_two_downloads_under_one_local_name_are_refused(tmp_path: Path) -> None:
    change = {"stimuli.csv.name": "hvm", "stimuli.zip.name": "hvm"}
    run = snakemake(
        tmp_path, "--dry-run", "--cores", "1", configfile=write_config(tmp_path, change, "config/paper.yaml")
    )
    assert run.returncode != 0
    assert "stimuli.zip and stimuli.csv would both be downloaded to brainscore/hvm" in run.stdout + run.stderr


# --- end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_outputs_are_sane(tiny_run: Path) -> None:
    assert (tiny_run / "figures/figure1.png").stat().st_size > 10_000
    assert (tiny_run / "figures/figure1.pdf").stat().st_size > 1_000
    sensitivity = io.read_dataset(tiny_run / "sensitivity/sensitivity.nc")
    populations = sensitivity["population"].values.tolist()
    assert {"brain (black box)", "brain (white box)", "standard", "robust_eps1"} <= set(populations)
    s = sensitivity["s_tilde"]
    assert bool(np.isfinite(s).all())
    networks = s.sel(population=["standard", "robust_eps1", "brain (white box)"])
    assert bool((networks > 0).all())
    assert bool((sensitivity["ci_low"] <= s + 1e-6).all() and (s <= sensitivity["ci_high"] + 1e-6).all())
    assert float(sensitivity["random_pair_level"].sel(population="brain (black box)")) > 0.5
    weights = io.read_dataset(tiny_run / "networks/standard.nc")
    assert 0 <= weights.attrs["clean_accuracy"] <= 1 and 0 <= weights.attrs["robust_accuracy"] <= 1
    recordings = io.read_dataset(tiny_run / "recordings/clean.nc")
    assert recordings["response"].dims == ("presentation", "neuroid")
    assert float(recordings["response"].min()) >= 0
    attack = io.read_dataset(tiny_run / "attacks/image0000.nc")
    assert attack["perturbed"].dtype == np.uint8
    assert bool((attack["site_delta_norm"] <= attack["eps"] + 1e-6).all())
    for path in tiny_run.rglob("*.nc"):
        attrs = io.read_dataset(path).attrs
        assert attrs["Conventions"].startswith("CF-") and attrs["config_hash"], path


@pytest.mark.slow
def test_second_invocation_does_nothing(tiny_run: Path) -> None:
    run = snakemake(tiny_run.parent.parent, "--dry-run", "--cores", "2")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


@pytest.mark.slow
def test_two_runs_give_identical_values(tiny_run: Path, tmp_path: Path) -> None:
    run = snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    again = tmp_path / "results" / "tiny"
    assert_same_results(tiny_run, again)
    shutil.rmtree(again)


# --- what triggers a rerun -------------------------------------------------------------


def reordered(value: object) -> object:
    """The same config with every mapping's keys in reverse order and every whole float as an int."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dry_run_with(workdir: Path, tmp_path: Path, config: dict) -> str:  # type: ignore[type-arg]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(workdir, "--dry-run", "--cores", "2", configfile=str(path))
    assert run.returncode == 0, run.stderr + run.stdout
    return run.stdout + run.stderr


@pytest.mark.slow
def test_key_order_and_number_formatting_trigger_nothing(tiny_run: Path, tmp_path: Path) -> None:
    config = reordered(yaml.safe_load((REPO / "config/tiny.yaml").read_text()))
    assert isinstance(config, dict) and config["attack"]["wide_ball_factor"] == 2  # written as an int
    output = dry_run_with(tiny_run.parent.parent, tmp_path, config)
    assert "Nothing to be done" in output, output


@pytest.mark.slow
def test_chunk_rows_triggers_nothing(tiny_run: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["attack"]["chunk_rows"] = 7
    config["preference"]["chunk_rows"] = 5
    output = dry_run_with(tiny_run.parent.parent, tmp_path, config)
    assert "Nothing to be done" in output, output


@pytest.mark.slow
def test_one_more_image_adds_one_attack_and_reruns_only_aggregates(tiny_run: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["attack"]["images"] += 1
    counts = job_counts(dry_run_with(tiny_run.parent.parent, tmp_path, config))
    counts.pop("total")
    aggregates = {"record_attacks", "brain_white_box", "sensitivity", "figure1", "all"}
    assert counts == {"attack_image": 1, **{rule: 1 for rule in aggregates}}, counts
