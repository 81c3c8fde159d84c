"""The workflow as users run it: dry-runs, config validation, and the tiny config end to end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
import yaml
from fixtures_brainscore import write_stimulus_set
from PIL import Image
from workflow_helpers import REPO, assert_same_results, job_counts, snakemake, snakemake_command

from neuroattack import io

CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("configfile", CONFIGS)
def test_dry_run_of_every_config(tmp_path: Path, configfile: str) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=configfile)
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    config = yaml.safe_load((REPO / configfile).read_text())
    assert counts["figure1"] == 1 and counts["sensitivity"] == 1
    assert counts["attack_units"] == config["attack"]["images"]
    # in silico every round; with a lab's rig the rounds recorded so far and the next one; a
    # round's attack in one job, or in one job per group of images (loop.images_per_job)
    parts = [rule for rule in counts if rule == "attack_round" or rule.startswith("attack_round_part")]
    assert parts and len({counts[rule] for rule in parts}) == 1
    assert 1 <= counts[parts[0]] <= config["loop"]["rounds"]


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
        ({"networks.standard.norm": "linf"}, "not allowed: a trained network (seed) is a small ResNet"),
        (
            {"networks.ckpt": {"eps": 4.0, "norm": "linf", "checkpoint": CHECKPOINT}},
            "networks.ckpt.eps = 4.0: allowed: a value <= 1",
        ),
        ({"networks.ckpt": {"eps": 3.0, "architecture": "vgg16", "checkpoint": CHECKPOINT}}, "vgg16"),
        (
            {"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "urls": ["file:///m/x.ckpt"]}}},
            "needs exactly one of the keys url or urls",
        ),
        (
            {"networks.ckpt": {"eps": 3.0, "checkpoint": {"urls": []}}},
            "networks.ckpt.checkpoint.urls = []: allowed: a list of at least 1 item(s)",
        ),
        ({"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "sha1": None, "sha256": None}}}, "sha256"),
        (
            {"networks.ckpt": {"eps": 3.0, "checkpoint": {**CHECKPOINT, "name": "a.ckpt"}}},
            'networks.ckpt.checkpoint.name = "a.ckpt": unknown key',
        ),
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
    assert {"black_box", "white_box", "standard", "robust_eps1"} <= set(populations)
    s = sensitivity["s_tilde"]
    assert bool(np.isfinite(s).all())
    networks = s.sel(population=["standard", "robust_eps1", "white_box"])
    assert bool((networks > 0).all())
    assert bool((sensitivity["ci_low"] <= s + 1e-6).all() and (s <= sensitivity["ci_high"] + 1e-6).all())
    assert float(sensitivity["random_pair_level"].sel(population="black_box")) > 0.5
    # the paper's claims, on the tiny run: black box <= white box within the white box's interval
    # (measured 0.057 <= 0.075 at eps 0.1, 0.091 <= 0.414 at 0.5), and the most robust network
    # (robust_eps1) the least sensitive at the largest eps (0.200 against 0.414 and 0.489)
    black, white = s.sel(population="black_box"), s.sel(population="white_box")
    assert bool((black <= sensitivity["ci_high"].sel(population="white_box")).all()), (black, white)
    largest = s.sel(eps=s["eps"].max(), population=["standard", "robust_eps1", "white_box"])
    assert str(largest["population"].values[int(np.argmin(largest.values))]) == "robust_eps1", largest
    weights = io.read_dataset(tiny_run / "networks/standard.nc")
    assert 0 <= weights.attrs["clean_accuracy"] <= 1 and 0 <= weights.attrs["robust_accuracy"] <= 1
    recordings = io.read_dataset(tiny_run / "recordings/clean.nc")
    assert recordings["response"].dims == ("presentation", "site")
    assert float(recordings["response"].min()) >= 0
    attack = io.read_dataset(tiny_run / "rounds/round1/attacks/image0000.nc")
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
def test_two_runs_give_identical_values(tiny_run: Path, module_run: Path) -> None:
    # Two runs from scratch of the same config: this repository's, and a user's folder that uses
    # the workflow as a module (tests/test_module.py). Every value agrees, bit for bit.
    assert_same_results(tiny_run, module_run / "results" / "tiny")


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
    assert isinstance(config, dict) and type(config["attack"]["wide_ball_factor"]) is int  # 1.0 written as 1
    output = dry_run_with(tiny_run.parent.parent, tmp_path, config)
    assert "Nothing to be done" in output, output


@pytest.mark.slow
def test_writing_out_the_default_layer_and_no_depth_layers_triggers_nothing(tiny_run: Path, tmp_path: Path) -> None:
    # a run whose networks are all seen at `layer: penultimate` is the run without the key,
    # value for value: the same params, so every finished file stands
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    for entry in config["networks"].values():
        entry["layer"] = "penultimate"
    config["attack"]["layers"] = []
    output = dry_run_with(tiny_run.parent.parent, tmp_path, config)
    assert "Nothing to be done" in output, output
    config["networks"]["standard"]["layer"] = "stages.1"
    output = dry_run_with(tiny_run.parent.parent, tmp_path, config)
    assert "Nothing to be done" not in output and "features" in output, output


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
    aggregates = {"refit_site_models", "brain_white_box", "sensitivity", "figure1", "figure6", "figure8", "all"}
    aggregates |= {"figure2", "figure4", "sensitivity_table", "transfer_ratios"}
    per_round = {"attack_round", "round_stimuli", "record", "round_responses", "round_sensitivity"}
    rounds = config["loop"]["rounds"]
    # A round's attack is one job, which makes every image's file: each round's is redone (later
    # rounds' site models are also refitted on round 1's recordings, which the new image joins).
    expected = {"attack_units": 1, **{rule: 1 for rule in aggregates}}
    assert counts == {**expected, **{rule: rounds for rule in per_round}}, counts


# --- when something goes wrong (README, "When something goes wrong") ---------------------


def test_a_schema_error_names_key_value_and_what_is_allowed_and_nothing_else(tmp_path: Path) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=write_config(tmp_path, {"attack.restarts": 0}))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "attack.restarts = 0: allowed: a whole number >= 1" in output
    assert len(output.splitlines()) < 12, output  # not the ~330 lines of schema snakemake.utils.validate prints
    assert "definitions" not in output and "positive_int" not in output


def stimulus_source(tmp_path: Path, source: str) -> tuple[dict, str, int]:  # type: ignore[type-arg]
    """Config changes for a stimulus set of each source, where its size is known at start,
    and what the message says of it: (changes, origin, number of images)."""
    if source == "embedded":
        return {}, "12 photographs x stimuli.per_category 6", 72
    rig = {"source": "table", "path": str(tmp_path / "rig.csv"), "sites": None}  # simulated needs embedded
    if source == "folder":
        folder = tmp_path / "images"
        for index, category in enumerate(["cats", "cats", "dogs", "dogs", "dogs"]):
            (folder / category).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16, 3), 40 * index, np.uint8)).save(folder / category / f"{index}.png")
        (folder / ".hidden.png").write_bytes(b"")  # hidden files are not stimuli
        stimuli = {"source": "folder", "path": str(folder), "resolution": 16}
        return {"stimuli": stimuli, "recordings": rig}, f"images in {folder}", 5
    mirror = write_stimulus_set(tmp_path / "mirror", n_images=4, side=16)
    local = Path("downloads/brainscore") / mirror.csv_path.name
    (tmp_path / local).parent.mkdir(parents=True)
    shutil.copy(mirror.csv_path, tmp_path / local)  # the CSV downloaded by an earlier run; the ZIP is not
    remote = {
        name: {"url": path.as_uri(), "sha1": None}
        for name, path in [("csv", mirror.csv_path), ("zip", mirror.zip_path)]
    }
    stimuli = {"source": "brainscore", "resolution": 16, **remote}
    return {"stimuli": stimuli, "recordings": rig}, f"rows of {local}", 4


@pytest.mark.parametrize("source", ["embedded", "folder", "brainscore"])
def test_more_attacked_images_than_stimuli_stop_the_run_at_start(tmp_path: Path, source: str) -> None:
    change, origin, count = stimulus_source(tmp_path, source)
    too_many = write_config(tmp_path, {**change, "attack.images": count + 1})
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=too_many)
    assert run.returncode != 0
    message = (
        f"config: attack.images = {count + 1}, but the stimulus set has only {count} images ({origin}); "
        f"lower attack.images to at most {count}"
    )
    assert message in run.stdout + run.stderr, run.stdout + run.stderr
    enough = write_config(tmp_path, {**change, "attack.images": count, "screening.images": min(2, count)})
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=enough)
    assert "attack.images" not in run.stdout + run.stderr, run.stdout + run.stderr  # the bound is exact


def last_line(log: Path) -> str:
    lines = log.read_text().splitlines()
    assert "Traceback (most recent call last):" in lines, log.read_text()
    return lines[-1]


@pytest.mark.slow
def test_a_failed_jobs_log_holds_the_traceback_and_the_cause(tmp_path: Path) -> None:
    table = tmp_path / "rig.csv"
    table.write_text("stimulus_id,neuroid_id,response\ncat_001,site0,3\n")  # no repetition column
    config = write_config(tmp_path, {"recordings": {"source": "table", "path": str(table), "sites": None}})
    run = snakemake(tmp_path, "--cores", "1", "results/tiny/recordings/clean.nc", configfile=config)
    assert run.returncode != 0
    log = tmp_path / "results/tiny/logs/import_recordings.log"
    assert str(log.relative_to(tmp_path)) in run.stdout + run.stderr  # where snakemake points the user
    cause = last_line(log)
    assert cause.endswith(
        f"cause: KeyError: {table}: missing column(s) ['repetition'] (columns present: "
        "['stimulus_id', 'neuroid_id', 'response']); a recordings table needs stimulus_id, "
        "neuroid_id, repetition, response (optional region, animal)"
    ), cause
    table.write_text("stimulus_id,neuroid_id,repetition,response\ncat_001,site0,0,3\ncat_001,site0,1,4\n")  # fixed
    again = snakemake(tmp_path, "--cores", "1", "results/tiny/recordings/clean.nc", configfile=config)
    assert again.returncode == 0, again.stderr[-3000:]  # the same command goes on
    assert io.read_dataset(tmp_path / "results/tiny/recordings/clean.nc", "recordings").sizes["presentation"] == 2


def copy_of_run(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run's working directory (results, timestamps and .snakemake metadata)."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run.parent.parent, workdir, symlinks=True)
    return workdir


@pytest.mark.slow
def test_an_intermediate_of_the_wrong_schema_names_a_command_that_remakes_it(tiny_run: Path, tmp_path: Path) -> None:
    workdir = copy_of_run(tiny_run, tmp_path)
    responses = Path("results/tiny/rounds/round2/responses.nc")
    io.write_dataset(xr.Dataset({"recorded": ("site", [1.0])}), workdir / responses, "t", "another program")
    readers = [
        workdir / "results/tiny/logs" / name
        for name in ("sensitivity.log", "round_sensitivity/round2.log", "figure8.log")
    ]
    for log in readers:
        log.unlink()  # the copied run's logs: only a reader that runs now writes one
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode != 0
    failed = [log for log in readers if log.exists() and "Traceback (most recent call last):" in log.read_text()]
    assert failed, run.stdout[-3000:] + run.stderr[-3000:]  # whichever reader ran first failed
    cause = last_line(failed[0])
    assert f"cause: ValueError: {responses}: not a responses file" in cause
    assert (
        "missing variable(s) predicted_change, recorded_change, random_recorded_change, random_squared_change; "
        "dimension(s) image, eps, direction" in cause
    )
    assert "It is made by rule round_responses" in cause
    advice = re.search(r"run your snakemake command again with (--forcerun \S+)$", cause)
    assert advice, cause
    again = snakemake(workdir, "--cores", "2", *advice.group(1).split())
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_results(tiny_run, workdir / "results/tiny")


@pytest.mark.slow
def test_a_deleted_intermediate_is_remade_with_forcerun(tiny_run: Path, tmp_path: Path) -> None:
    workdir = copy_of_run(tiny_run, tmp_path)
    responses = Path("results/tiny/rounds/round2/responses.nc")
    (workdir / responses).unlink()
    plain = snakemake(workdir, "--cores", "2")  # what the files made from it exist for, nothing remakes it
    assert plain.returncode == 0 and "Nothing to be done" in plain.stdout + plain.stderr
    assert not (workdir / responses).exists()
    run = snakemake(workdir, "--cores", "2", "--forcerun", str(responses))  # README, "When something goes wrong"
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_results(tiny_run, workdir / "results/tiny")


@pytest.mark.slow
def test_after_a_kill_unlock_then_the_same_command_goes_on(tmp_path: Path) -> None:
    same = ("--profile", str(REPO / "workflow/profiles/default"), "--cores", "1", "results/tiny/stimuli/stimuli.nc")
    command, env = snakemake_command(tmp_path, *same)
    killed = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    locks, job_log = tmp_path / ".snakemake/locks", tmp_path / "results/tiny/logs/stimuli.log"
    deadline = time.monotonic() + 300
    while not (locks.is_dir() and any(locks.iterdir())) and time.monotonic() < deadline:
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    started = time.monotonic()
    while not job_log.exists() and time.monotonic() < started + 10:  # kill it inside the job when possible
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # kill -9: Snakemake cannot clean up
    killed.wait()
    assert any(locks.iterdir())
    refused = snakemake(tmp_path, *same)
    assert refused.returncode != 0
    assert "--unlock" in refused.stdout + refused.stderr
    unlock = snakemake(tmp_path, *same, "--unlock")
    assert unlock.returncode == 0, unlock.stderr
    resumed = snakemake(tmp_path, *same)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert io.read_dataset(tmp_path / "results/tiny/stimuli/stimuli.nc", "stimuli").sizes["stimulus_id"] == 72


@pytest.mark.slow
def test_a_truncated_download_is_named_and_forcerun_downloads_it_again(tmp_path: Path) -> None:
    mirror = write_stimulus_set(tmp_path / "mirror", n_images=4, side=16)
    good_zip = mirror.zip_path.read_bytes()
    mirror.zip_path.write_bytes(good_zip[: len(good_zip) // 2])  # the mirror holds half the file
    remote = {
        name: {"url": path.as_uri(), "sha1": None}
        for name, path in [("csv", mirror.csv_path), ("zip", mirror.zip_path)]
    }
    config = write_config(
        tmp_path,
        {
            "stimuli": {"source": "brainscore", "resolution": 16, **remote},
            "recordings": {"source": "table", "path": str(tmp_path / "rig.csv"), "sites": None},
            "attack.images": 2,
        },
    )
    target = "results/tiny/stimuli/stimuli.nc"
    run = snakemake(tmp_path, "--cores", "1", target, configfile=config)
    assert run.returncode != 0
    cause = last_line(tmp_path / "results/tiny/logs/stimuli.log")
    local = Path("downloads/brainscore") / mirror.zip_path.name
    assert f"cause: ValueError: {local}: not a readable ZIP archive" in cause
    advice = re.search(r"running your snakemake command again with (--forcerun \S+)$", cause)
    assert advice and advice.group(1) == f"--forcerun {local}", cause
    mirror.zip_path.write_bytes(good_zip)  # the source is fixed
    again = snakemake(tmp_path, "--cores", "1", target, *advice.group(1).split(), configfile=config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert io.read_dataset(tmp_path / target, "stimuli").sizes["stimulus_id"] == 4


def test_every_row_of_the_readme_fault_table_is_a_test() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## When something goes wrong", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith(("| what", "| ---"))]
    assert len(rows) >= 12
    for row in rows:
        named = re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)`", row.rsplit("|", 2)[-2])
        assert named, row
        module = None
        for file, test in named:
            module = file or module
            assert module and re.search(rf"^def {test}\(", (REPO / "tests" / module).read_text(), re.MULTILINE), row
    resuming = readme.split("**Resuming.**", 1)[1].split("\n\n", 1)[0]
    assert "`--unlock`" in resuming and "`--forcerun <that file>`" in resuming
    assert "delete it and rerun" not in readme


# --- the closed loop over recording rounds ---------------------------------------------


def test_three_rounds_dry_run_job_counts(tmp_path: Path) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=write_config(tmp_path, {"loop.rounds": 3}))
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    images = yaml.safe_load((REPO / "config/tiny.yaml").read_text())["attack"]["images"]
    assert counts["attack_units"] == images  # the network units, once
    assert counts["attack_round"] == 3  # every round's sites, one job a round
    assert counts["refit_site_models"] == 2
    for rule in ("round_stimuli", "round_responses", "round_sensitivity"):
        assert counts[rule] == 3, (rule, counts)
    assert counts["record"] == 4  # the clean stimulus set and every round's
    assert counts["site_models"] == counts["figure6"] == counts["figure1"] == 1


def test_without_refitting_every_round_attacks_with_the_first_models(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"loop.rounds": 3, "loop.refit": "none"})
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=config)
    counts = job_counts(run.stdout)
    assert "refit_site_models" not in counts and counts["attack_round"] == 3
    jobs = re.findall(r"rule attack_round:\n\s+input: (.*)\n", run.stdout)
    assert len(jobs) == 3 and all("results/tiny/rounds/round1/site_models.nc" in read.split(", ") for read in jobs)


def test_an_ensemble_refits_every_members_site_models_and_attacks_every_round(tmp_path: Path) -> None:
    change = {"loop.rounds": 3, "loop.ensemble": ["robust_eps1", "standard"]}
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=write_config(tmp_path, change))
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    # every round, round 1 included, attacks the sites on the members' mean
    assert counts["attack_round"] == 3  # one job a round
    assert counts["ensemble_site_models"] == 3 and "refit_site_models" not in counts  # one job per round
    jobs = re.findall(r"rule attack_round:\n\s+input: (.*)\n\s+output: (.*)\n", run.stdout)
    first = [read for read, written in jobs if "/rounds/round1/" in written]
    assert len(first) == 1 and "results/tiny/rounds/round1/ensemble/standard.nc" in first[0].split(", ")
    change["loop.refit"] = "none"  # every round: the members' models fitted on the clean recordings
    counts = job_counts(
        snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=write_config(tmp_path, change)).stdout
    )
    assert counts["ensemble_site_models"] == 1 and counts["attack_round"] == 3


def test_warm_starts_make_each_rounds_attack_read_the_previous_rounds(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"loop.rounds": 3, "loop.warm_start": True})
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", "--printshellcmds", "--verbose", configfile=config)
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    images = counts["attack_units"]
    assert counts["attack_round"] == 3  # one job a round, making every image's file
    jobs = re.findall(r"rule attack_round:\n\s+input: (.*)\n\s+output: (.*)\n", run.stdout)
    assert len(jobs) == 3
    for read, written in jobs:
        outputs = written.strip().split(", ")
        assert len(outputs) == images
        for output in outputs:
            number, index = re.search(r"rounds/round(\d)/attacks/image(\d+)\.nc$", output).groups()  # type: ignore[union-attr]
            earlier = [path for path in read.split(", ") if "/attacks/" in path]
            if number == "1":
                assert not earlier, read  # round 1 starts from scratch
            else:
                assert f"results/tiny/rounds/round{int(number) - 1}/attacks/image{index}.nc" in earlier, (output, read)


def test_an_ensemble_member_outside_networks_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"loop.ensemble": ["robust_eps1", "resnet"]})
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=config)
    assert run.returncode != 0 and "loop.ensemble" in run.stderr + run.stdout and "resnet" in run.stderr + run.stdout


@pytest.mark.slow
def test_the_loop_end_to_end_gives_figure6_per_round(tiny_run: Path) -> None:
    for suffix in (".png", ".pdf"):
        assert (tiny_run / f"figures/figure6{suffix}").stat().st_size > 1_000
    plotted = io.read_dataset(tiny_run / "figures/figure6.nc")
    assert plotted["round"].values.tolist() == [1, 2]
    assert set(plotted["population"].values.tolist()) == {
        "black_box",
        "random:brain",
        "surrogate",
        "white_box",
    }
    assert bool(np.isfinite(plotted["s_tilde"]).all())
    white = plotted["s_tilde"].sel(population="white_box")
    assert bool((white.isel(round=0) == white.isel(round=1)).all())  # the same images: one ceiling
    first = io.read_dataset(tiny_run / "rounds/round1/site_models.nc")
    second = io.read_dataset(tiny_run / "rounds/round2/site_models.nc")
    assert first["neuroid_id"].values.tolist() == second["neuroid_id"].values.tolist()
    assert not np.allclose(first["weight"].values, second["weight"].values)  # refitted on round 1's recordings
    # Figure 1's brain is the last round's: one estimator, so the same numbers to the last bit.
    figure1 = io.read_dataset(tiny_run / "sensitivity/sensitivity.nc")
    last_round = io.read_dataset(tiny_run / "rounds/round2/sensitivity.nc")
    for population in ("black_box", "surrogate", "white_box"):
        for name in ("s_tilde", "ci_low", "ci_high"):
            assert np.array_equal(
                figure1[name].sel(population=population).values, last_round[name].sel(population=population).values
            ), (population, name)


@pytest.mark.slow
def test_a_run_killed_mid_round_goes_on_without_redoing_finished_rounds(tiny_run: Path, tmp_path: Path) -> None:
    workdir = copy_of_run(tiny_run, tmp_path)
    results = workdir / "results/tiny"
    # What a kill during round 2's attacks leaves: round 1 and round 2's site models and first attack.
    unfinished = [results / f"rounds/round2/attacks/image{index:04d}.nc" for index in (1, 2)]
    unfinished += [results / f"rounds/round2/{name}.nc" for name in ("stimuli", "responses", "sensitivity")]
    unfinished.append(results / "recordings/round2.nc")
    unfinished += [results / "sensitivity/sensitivity.nc", *results.glob("figures/figure[16].*")]
    for path in unfinished:
        path.unlink()
    dry = snakemake(workdir, "--dry-run", "--cores", "2")
    counts = job_counts(dry.stdout)
    counts.pop("total")
    per_round = ("round_stimuli", "record", "round_responses", "round_sensitivity")
    assert counts == {
        "attack_round": 1,  # round 2's attack is one job: it makes every image's file again
        **{rule: 1 for rule in (*per_round, "sensitivity", "transfer_ratios", "figure1", "figure6", "figure8", "all")},
        # figures 2 and 4 and the s~ table show the last round too
        **{rule: 1 for rule in ("figure2", "figure4", "sensitivity_table")},
    }
    assert "round1" not in " ".join(line for line in dry.stdout.splitlines() if "output:" in line)
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_results(tiny_run, results)


@pytest.mark.slow
def test_a_network_refit_changes_later_rounds_and_never_round_1(tiny_run: Path, tmp_path: Path) -> None:
    workdir = copy_of_run(tiny_run, tmp_path)
    results = workdir / "results/tiny"
    first_round = sorted(
        [*results.glob("attacks/*.nc"), *results.glob("rounds/round1/**/*.nc"), results / "recordings/round1.nc"]
    )
    before = {path: path.read_bytes() for path in first_round}
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["attack"].update(input_diversity=0, momentum=0)  # written out at their off values: nothing to do
    assert "Nothing to be done" in dry_run_with(workdir, tmp_path, config)
    config["loop"]["refit"] = "network"
    counts = job_counts(dry_run_with(workdir, tmp_path, config))
    assert counts["finetune_member"] == 1 and "attack_units" not in counts
    assert counts["attack_round"] == counts["round_stimuli"] == counts["record"] == 1  # round 2's only
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(config))
    run = snakemake(workdir, "--cores", "2", configfile=str(path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert all(path.read_bytes() == before[path] for path in first_round)
    tuned = io.read_dataset(results / "rounds/round2/networks/surrogate.nc", "network")
    errors = tuned.attrs["finetune_held_out_error"]
    assert tuned.attrs["finetuned_on_rounds"] == 1 and min(errors) <= errors[0]
    assert io.read_dataset(results / "rounds/round2/site_models.nc", "site_models").attrs["rounds_fitted_on"] == 1
    responses = io.read_dataset(results / "rounds/round2/responses.nc", "responses")
    assert responses["every_site_true_change"].dims == ("site", "image", "eps", "direction", "recorded_site")
    figure8 = io.read_dataset(results / "figures/figure8.nc")
    assert figure8.sizes["round"] == 2 and "true_specificity" in figure8
    # the transfer options remake every black-box attack, round 1's included, and no white-box one
    config["attack"].update(input_diversity=0.5, momentum=0.9)
    counts = job_counts(dry_run_with(workdir, tmp_path, config))
    assert counts["attack_round"] == config["loop"]["rounds"]
    assert "brain_white_box" not in counts and "attack_units" not in counts


# --- a round's attack across jobs, killed, out of memory -----------------------------------


def test_images_per_job_splits_every_rounds_attack_into_groups_of_images(tmp_path: Path) -> None:
    run = snakemake(
        tmp_path, "--dry-run", "--cores", "2", configfile=write_config(tmp_path, {"loop.images_per_job": 2})
    )
    assert run.returncode == 0, run.stderr + run.stdout
    counts = job_counts(run.stdout)
    rounds = yaml.safe_load((REPO / "config/tiny.yaml").read_text())["loop"]["rounds"]
    assert "attack_round" not in counts and counts["attack_round_part1"] == counts["attack_round_part2"] == rounds
    jobs = re.findall(r"rule (attack_round_part\d):\n\s+input: .*\n\s+output: (.*)\n", run.stdout)
    images = {rule: {re.search(r"image(\d+)", out)[1] for out in outputs.split(", ")} for rule, outputs in jobs}  # type: ignore[index]
    assert images == {"attack_round_part1": {"0000", "0001"}, "attack_round_part2": {"0002"}}


@pytest.mark.parametrize(("cores", "threads"), [(2, 1), (3, 1), (8, 4)])
def test_a_rounds_jobs_share_the_cores_so_each_starts_on_the_first_free_one(
    tmp_path: Path, cores: int, threads: int
) -> None:
    # the default config's two jobs a round: a job asking for every core would wait while any
    # one-thread job (the units' attacks, the screening) still held one
    run = snakemake(tmp_path, "--dry-run", "--cores", str(cores), configfile="config/config.yaml")
    assert run.returncode == 0, run.stderr + run.stdout
    blocks = re.findall(r"rule attack_round_part\d:\n((?:    .*\n)+)", run.stdout)
    assert len(blocks) == 2 * yaml.safe_load((REPO / "config/config.yaml").read_text())["loop"]["rounds"]
    for block in blocks:
        asked = re.search(r"\n\s+threads: (\d+)", block)
        assert (int(asked[1]) if asked else 1) == threads, block


ROUND2_ATTACKS = [f"results/tiny/rounds/round2/attacks/image{index:04d}.nc" for index in range(3)]


def round2_attack_from_scratch(tiny_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny run without round 2's attack (nor its finished images): the command
    names those files (ROUND2_ATTACKS), since the files made from them are all still there."""
    workdir = copy_of_run(tiny_run, tmp_path)
    attacks = workdir / "results/tiny/rounds/round2/attacks"
    shutil.rmtree(attacks)
    return workdir, attacks


def attack_round_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if "attack_round.py" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_a_killed_rounds_attack_loses_only_the_image_it_was_on(tiny_run: Path, tmp_path: Path) -> None:
    workdir, attacks = round2_attack_from_scratch(tiny_run, tmp_path)
    first = attacks / "finished/image0000.nc"
    # one image at a time, in small batches (which change no result), so the kill lands between images
    command, env = snakemake_command(
        workdir,
        "--set-threads",
        "attack_round=1",
        "--set-resources",
        "attack_round:chunk_rows=2",
        "--cores",  # after the options that take lists, which would take the targets too
        "1",
        *ROUND2_ATTACKS,
    )
    running = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not first.exists() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in attack_round_processes():
        process.kill()  # kill -9 the job, as a preemption or the OOM killer would
    assert running.wait(timeout=300) != 0
    finished = sorted(p.name for p in (attacks / "finished").glob("*.nc"))
    assert "image0000.nc" in finished and len(finished) < 3, finished  # killed after the first image
    assert not (attacks / "image0000.nc").exists()  # Snakemake removed the failed job's outputs
    before = (first.stat().st_mtime_ns, first.read_bytes())
    again = snakemake(workdir, "--cores", "2", *ROUND2_ATTACKS)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before  # reused, not recomputed
    log = (workdir / "results/tiny/logs/attack_round/round2.log").read_text()
    assert f"{len(finished)} of 3 images finished before, reused" in log
    assert_same_results(tiny_run, workdir / "results/tiny")


OUT_OF_MEMORY_ONCE = """
import os, sys
marker = os.environ["NEUROATTACK_TEST_OOM_MARKER"]
if "attack_round.py" in " ".join(sys.argv) and not os.path.exists(marker):
    open(marker, "w").close()
    import torch
    from neuroattack.attacks import untargeted

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")

    untargeted.attack_targets = out_of_memory
"""


@pytest.mark.slow
def test_a_rounds_attack_out_of_memory_is_retried_with_half_its_rows(tiny_run: Path, tmp_path: Path) -> None:
    workdir, _ = round2_attack_from_scratch(tiny_run, tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(OUT_OF_MEMORY_ONCE)
    marker = tmp_path / "ran_out_of_memory"
    command, env = snakemake_command(workdir, "--cores", "2", "--retries", "1", *ROUND2_ATTACKS)
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(hook), env.get("PYTHONPATH", "")]),
        "NEUROATTACK_TEST_OOM_MARKER": str(marker),
    }
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert marker.exists()  # the first attempt ran out of memory
    chunk_rows = yaml.safe_load((REPO / "config/tiny.yaml").read_text())["attack"]["chunk_rows"]
    log = (workdir / "results/tiny/logs/attack_round/round2.log").read_text()
    assert f"attacking 3 images, {chunk_rows // 2} rows per batch" in log  # the retry's
    assert_same_results(tiny_run, workdir / "results/tiny")
