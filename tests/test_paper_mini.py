"""A paper-shaped mini config end to end: the same sources as config/paper.yaml
(Brain-Score assembly and stimulus set, robustness-library checkpoints of two
architectures, L2 and L-infinity), tiny sizes, served by a loopback HTTP server with
some files only at a later mirror; then the lab's loop (export for the rig, ingest)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures_brainscore import write_assembly, write_robustness_checkpoint, write_stimulus_set
from loopback_server import LoopbackServer
from workflow_helpers import REPO, assert_same_results, job_counts, snakemake, snakemake_command

from neuroattack import io
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.models import Architecture, TorchvisionResNet

pytestmark = pytest.mark.slow
N_IMAGES = 16


def digest(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("served")
    write_assembly(root / "assy_dicarlo_MajajHong2015_public.nc", n_images=N_IMAGES, n_reps=4)
    truth = write_stimulus_set(root, n_images=N_IMAGES, side=40, stem="stimulus_hvm-public")
    truth.csv_path.rename(root / "image_dicarlo_hvm-public.csv")  # the CSV only at its older location
    write_robustness_checkpoint(root / "resnet18_linf_eps4.0.ckpt", seed=0, architecture="resnet18")
    write_robustness_checkpoint(root / "resnet50_l2_eps3.ckpt", seed=1)
    server = LoopbackServer(root).start()
    yield server
    server.stop()


def mini_config(server: LoopbackServer, workdir: Path, perturbed: list[str] | None = None) -> Path:
    """config/paper.yaml with loopback URLs and tiny sizes: the stimulus CSV and one checkpoint
    answer only at their second mirror (the first gives 404); that checkpoint has no checksum."""
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    root = server.root
    config["results"] = "results/mini"
    config["stimuli"].update(resolution=32)
    config["stimuli"]["csv"] = {
        "urls": [server.url("brainscore-storage/stimulus_hvm-public.csv"), server.url("image_dicarlo_hvm-public.csv")],
        "sha1": digest(root / "image_dicarlo_hvm-public.csv", "sha1"),
    }
    config["stimuli"]["zip"] = {
        "urls": [server.url("stimulus_hvm-public.zip"), server.url("older/stimulus_hvm-public.zip")],
        "sha1": digest(root / "stimulus_hvm-public.zip", "sha1"),
    }
    assembly = "assy_dicarlo_MajajHong2015_public.nc"
    config["recordings"].update(
        assembly={"url": server.url(assembly) + "?versionId=x", "sha1": digest(root / assembly, "sha1")},
        sites=2,
        perturbed=perturbed,
    )
    config["networks"] = {
        "resnet18_linf_eps4_255": {
            "eps": 4 / 255,
            "norm": "linf",
            "architecture": "resnet18",
            "checkpoint": {
                "urls": [server.url("gone/resnet18_linf_eps4.0.ckpt"), server.url("resnet18_linf_eps4.0.ckpt")],
                "sha256": None,
            },
        },
        "resnet50_l2_eps3": {
            "eps": 3.0,
            "checkpoint": {
                "url": server.url("resnet50_l2_eps3.ckpt"),
                "sha256": digest(root / "resnet50_l2_eps3.ckpt", "sha256"),
            },
        },
    }
    config["like_for_like"] = {"networks": []}  # paper.yaml's measured networks are not among these two
    config["surrogate"].update(folds=2, alphas=[1.0, 100.0])
    config["attack"].update(
        images=2, eps=[0.5, 2.0], steps=2, restarts=1, units_per_network=2, chunk_rows=64, precision="float32"
    )
    config["preference"].update(
        eps=[0.5, 2.0], images_per_site=2, categories=2, steps=2, restarts=1, chunk_rows=64, precision="float32"
    )
    config["sensitivity"].update(bootstrap=50, random_pairs=200)
    config["screening"].update(images=2, splits=2, test_fraction=0.25, bootstrap=20)
    path = workdir / "mini.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def mini_run(served: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("mini")
    run = snakemake(workdir, "--cores", "2", configfile=str(mini_config(served, workdir)))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    return workdir


def copy_of(run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run (timestamps and Snakemake's records kept) for a test that
    changes files, so that the module's run stays as it was built for every other test."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True)
    return copy


def test_paper_dry_run_lists_the_expected_jobs(tmp_path: Path) -> None:
    run = snakemake(tmp_path, "--dry-run", "--cores", "2", configfile="config/paper.yaml")
    assert run.returncode == 0, run.stderr
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    n_networks = len(config["networks"])
    expected = {
        "download": n_networks + 3,  # checkpoints, assembly, stimulus CSV and ZIP
        "convert_checkpoint": n_networks,
        "stimuli": 1,
        "import_recordings": 1,
        "features": n_networks,
        "site_models": 1,
        "attack_units": config["attack"]["images"],
        # round 1's attack, in jobs of loop.images_per_job images; later rounds wait for the rig
        **{
            f"attack_round_part{k + 1}": 1
            for k in range(-(-config["attack"]["images"] // config["loop"]["images_per_job"]))
        },
        "round_stimuli": 1,  # round 1's images, for the rig: the loop waits for their recordings
        "export_rig_stimuli": 1,
        "category_preference": 1,
        "figure3": 1,
        "sensitivity": 1,
        "figure1": 1,
        "figure2": 1,
        "figure4": 1,
        "sensitivity_table": 1,
        "screening": 1,
        "figure5": 1,
        "export_screening_stimuli": 1,
        "all": 1,
    }
    assert job_counts(run.stdout) == {**expected, "total": sum(expected.values())}
    assert run.stderr.count("round 1 of the loop has no recordings yet") == 1
    assert "results/paper/rig/round1/stimuli.csv" in run.stderr


def test_downloads_are_verified_and_unknown_checksums_recorded(mini_run: Path, served: LoopbackServer) -> None:
    downloads = mini_run / "downloads"
    linf = downloads / "checkpoints" / "resnet18_linf_eps4_255.ckpt"
    assert linf.read_bytes() == (served.root / "resnet18_linf_eps4.0.ckpt").read_bytes()
    assert (downloads / "checkpoints" / "resnet18_linf_eps4_255.ckpt.sha256").read_text().split()[0] == digest(
        linf, "sha256"
    )
    assert not list(downloads.rglob("*.part"))


def test_a_later_mirror_delivers_under_the_first_ones_name(mini_run: Path, served: LoopbackServer) -> None:
    downloads = mini_run / "downloads"
    csv = downloads / "brainscore" / "stimulus_hvm-public.csv"  # named after the first URL
    assert csv.read_bytes() == (served.root / "image_dicarlo_hvm-public.csv").read_bytes()
    assert not (downloads / "brainscore" / "image_dicarlo_hvm-public.csv").exists()
    log = (mini_run / "results/mini/logs/download/brainscore/stimulus_hvm-public.csv.log").read_text()
    assert "mirror 1 of 2 failed" in log and "404" in log and "brainscore-storage/stimulus_hvm-public.csv" in log
    assert "image_dicarlo_hvm-public.csv: delivered stimulus_hvm-public.csv (mirror 2 of 2)" in log
    paths = [r.path for r in served.requests]
    assert "/gone/resnet18_linf_eps4.0.ckpt" in paths
    assert "/older/stimulus_hvm-public.zip" not in paths  # the first mirror answered


def test_converted_inputs_match_the_sources(mini_run: Path) -> None:
    results = mini_run / "results" / "mini"
    stimuli = io.read_dataset(results / "stimuli/stimuli.nc")
    assert stimuli.sizes["stimulus_id"] == N_IMAGES and stimuli.attrs["resolution"] == 32
    recordings = io.read_dataset(results / "recordings/clean.nc")
    assert set(recordings["region"].values) == {"IT"} and recordings.sizes["site"] == 3
    assert recordings.sizes["presentation"] == N_IMAGES * 4
    weights = io.read_dataset(results / "networks/resnet50_l2_eps3.nc")
    assert Architecture.from_json(weights.attrs["architecture"]).name == "resnet50"
    assert weights.attrs["training_norm"] == "l2" and weights.attrs["training_eps"] == 3.0
    assert isinstance(network_from_dataset(weights), TorchvisionResNet)
    linf = io.read_dataset(results / "networks/resnet18_linf_eps4_255.nc")
    assert Architecture.from_json(linf.attrs["architecture"]).name == "resnet18"
    assert linf.attrs["training_norm"] == "linf" and linf.attrs["training_eps"] == 4 / 255
    assert io.read_dataset(results / "features/resnet18_linf_eps4_255.nc").sizes["unit"] == 512
    models = io.read_dataset(results / "rounds/round1/site_models.nc")
    assert models.sizes["site"] == 2


def test_outputs_without_rig_recordings(mini_run: Path) -> None:
    results = mini_run / "results" / "mini"
    sensitivity = io.read_dataset(results / "sensitivity/sensitivity.nc")
    populations = set(sensitivity["population"].values.tolist())
    assert {"surrogate", "resnet18_linf_eps4_255", "resnet50_l2_eps3"} <= populations
    assert "black_box" not in populations
    assert bool(np.isfinite(sensitivity["s_tilde"]).all())
    assert (results / "figures/figure1.png").stat().st_size > 10_000
    table = pd.read_csv(results / "rig/round1/stimuli.csv")
    # clean images + images x sites x eps x directions + one random direction per image and eps
    expected = {"clean": 2, "perturbed": 2 * 2 * 2 * 2, "random": 2 * 2}
    assert table["category_name"].value_counts().to_dict() == expected
    with zipfile.ZipFile(results / "rig/round1/stimuli.zip") as archive:
        assert sorted(archive.namelist()) == sorted(table["filename"])


def test_second_run_does_nothing_and_touched_downloads_are_not_fetched_again(
    mini_run: Path, served: LoopbackServer, tmp_path: Path
) -> None:
    mini_run = copy_of(mini_run, tmp_path)
    config = str(mini_run / "mini.yaml")
    run = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=config)
    assert "Nothing to be done" in run.stdout + run.stderr
    for path in (mini_run / "downloads").rglob("*.ckpt"):
        path.touch()
    before = len(served.requests)
    run = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=config)
    assert run.returncode == 0
    assert "rule download:" not in run.stdout  # downstream rules may rerun; the transfer never does
    assert len(served.requests) == before


def _planned(dry_run_output: str) -> dict[str, int]:
    """{rule: count} of a dry run; {} when there is nothing to be done."""
    return {} if "Nothing to be done" in dry_run_output else job_counts(dry_run_output)


def test_editing_mirror_lists_triggers_nothing(mini_run: Path, served: LoopbackServer, tmp_path: Path) -> None:
    config = yaml.safe_load((mini_run / "mini.yaml").read_text())
    csv = config["stimuli"]["csv"]
    csv.update(urls=csv["urls"][::-1], name="stimulus_hvm-public.csv")  # reordered; the local name pinned
    config["recordings"]["assembly"]["urls"] = [config["recordings"]["assembly"].pop("url"), "file:///mnt/mirror/a.nc"]
    checkpoint = config["networks"]["resnet18_linf_eps4_255"]["checkpoint"]
    checkpoint["urls"] = checkpoint["urls"][1:]  # the dead mirror dropped
    edited = tmp_path / "mirrors.yaml"  # dry runs only: the run itself is left as it is
    edited.write_text(yaml.safe_dump(config))
    before = len(served.requests)
    # the same jobs as with the unedited config
    unedited = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=str(mini_run / "mini.yaml"))
    run = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=str(edited))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rule download:" not in run.stdout
    assert _planned(run.stdout) == _planned(unedited.stdout)
    # without `name`, the first URL names the file: a new first mirror means a new local file
    del csv["name"]
    edited.write_text(yaml.safe_dump(config))
    run = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=str(edited))
    assert "downloads/brainscore/image_dicarlo_hvm-public.csv" in run.stdout
    assert job_counts(run.stdout)["download"] == 1
    assert len(served.requests) == before


def test_a_pinned_checksum_reruns_the_download_without_a_transfer_and_unpinning_fetches_again(
    mini_run: Path, served: LoopbackServer, tmp_path: Path
) -> None:
    mini_run = copy_of(mini_run, tmp_path)
    target = "downloads/checkpoints/resnet18_linf_eps4_255.ckpt"
    path = mini_run / target
    stat_before = path.stat()
    recorded = (mini_run / f"{target}.sha256").read_text().split()[0]
    config = yaml.safe_load((mini_run / "mini.yaml").read_text())
    config["networks"]["resnet18_linf_eps4_255"]["checkpoint"]["sha256"] = recorded
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(yaml.safe_dump(config))
    before = len(served.requests)
    run = snakemake(mini_run, "--cores", "1", target, configfile=str(pinned))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rule download:" in run.stdout + run.stderr  # the checksum is in its params
    assert len(served.requests) == before  # verified in place, not fetched
    assert path.stat().st_ino == stat_before.st_ino  # the same file (Snakemake touches it: what reads it reruns)
    log_path = mini_run / "results/mini/logs/download/checkpoints/resnet18_linf_eps4_255.ckpt.log"
    assert f"verified (sha256 {recorded})" in log_path.read_text()
    # Back to no checksum: nothing vouches for the copy but a digest recorded from a transfer
    # (which may have been a truncated one), so the rerun download job fetches it again.
    run = snakemake(mini_run, "--cores", "1", target, configfile=str(mini_run / "mini.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(served.requests) > before
    assert "no checksum pinned in the config; downloading it again" in log_path.read_text()
    assert (mini_run / f"{target}.sha256").read_text().split()[0] == recorded  # the same bytes came back


def rig_table(shown: pd.DataFrame, sites: np.ndarray, path: Path) -> str:
    """A rig's recordings of every image of `shown` from every site, 3 repetitions each."""
    rng = np.random.default_rng(0)
    rows = [
        {"stimulus_id": s, "neuroid_id": n, "repetition": r, "response": float(rng.normal(1.0, 0.5))}
        for s in shown["stimulus_id"]
        for n in sites
        for r in range(3)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_the_loop_stops_at_each_unrecorded_round_and_goes_on_when_its_table_is_added(
    mini_run: Path, served: LoopbackServer, tmp_path: Path
) -> None:
    mini_run = copy_of(mini_run, tmp_path)
    results = mini_run / "results" / "mini"
    shown = pd.read_csv(results / "rig/round1/stimuli.csv")
    assert set(shown["category_name"]) == {"clean", "perturbed", "random"}
    sites = io.read_dataset(results / "rounds/round1/site_models.nc")["neuroid_id"].values
    first = rig_table(shown, sites, mini_run / "round1.csv")
    run = snakemake(mini_run, "--cores", "2", configfile=str(mini_config(served, mini_run, perturbed=[first])))
    assert run.returncode == 0, run.stderr[-5000:]
    responses = io.read_dataset(results / "rounds/round1/responses.nc")
    assert responses["recorded"].dims == ("site", "image", "eps", "direction")
    assert responses["random_squared_change"].dims == ("site", "image", "eps")
    sensitivity = io.read_dataset(results / "sensitivity/sensitivity.nc")
    assert "black_box" in sensitivity["population"].values.tolist()
    assert io.read_dataset(results / "figures/figure6.nc")["round"].values.tolist() == [1]
    # Round 2: refitted on round 1's recordings, attacked, exported; the run says what to record.
    assert io.read_dataset(results / "rounds/round2/site_models.nc").attrs["rounds_fitted_on"] == 1
    assert (results / "rig/round2/stimuli.zip").exists()
    message = run.stderr.replace("\n", " ")
    assert message.count("round 2 of the loop has no recordings yet") == 1  # said once, as the run ends
    assert "results/mini/rig/round2/stimuli.csv" in message and "entry 2" in message
    assert "recordings.perturbed" in message and "stimulus_id, neuroid_id, repetition, response" in message
    # A table named but not there stops the run at start, naming it.
    missing = mini_config(served, mini_run, perturbed=[first, str(mini_run / "absent.csv")])
    refused = snakemake(mini_run, "--dry-run", "--cores", "1", configfile=str(missing))
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "recordings.perturbed entry 2 names" in said and "absent.csv" in said
    # Round 2's recordings added: the loop goes on to round 3 without redoing round 1.
    second = rig_table(pd.read_csv(results / "rig/round2/stimuli.csv"), sites, mini_run / "round2.csv")
    config = mini_config(served, mini_run, perturbed=[first, second])
    dry = snakemake(mini_run, "--dry-run", "--cores", "2", configfile=str(config))
    counts = job_counts(dry.stdout)
    assert "attack_units" not in counts and counts["ingest_perturbed_recordings"] == 1
    assert counts["attack_round"] == 1  # round 3's
    assert counts["export_rig_stimuli"] == 1 and counts["refit_site_models"] == 1
    assert "round 3 of the loop has no recordings yet" in dry.stderr


def test_beside_real_recordings_a_network_is_measured_as_the_brain_with_their_sites_and_noise(
    mini_run: Path, served: LoopbackServer, tmp_path: Path
) -> None:
    mini_run = copy_of(mini_run, tmp_path)
    results = mini_run / "results" / "mini"
    sites = io.read_dataset(results / "rounds/round1/site_models.nc")
    first = rig_table(pd.read_csv(results / "rig/round1/stimuli.csv"), sites["neuroid_id"].values, tmp_path / "r1.csv")
    path = mini_config(served, mini_run, perturbed=[first])
    config = yaml.safe_load(path.read_text())
    config["like_for_like"] = {"networks": ["resnet18_linf_eps4_255"]}  # attacked by the surrogate, resnet50
    path.write_text(yaml.safe_dump(config))
    run = snakemake(mini_run, "--cores", "2", configfile=str(path))
    assert run.returncode == 0, run.stderr[-5000:]
    measured = results / "subjects/resnet18_linf_eps4_255"
    brain = io.read_dataset(measured / "brain/brain.nc")
    assert brain.sizes["site"] == sites.sizes["site"]  # as many sites as the recorded ones kept
    np.testing.assert_allclose(
        np.sort(brain["matched_reliability"].values), np.sort(np.clip(sites["reliability"].values, 0.02, 0.98))
    )
    assert brain.attrs["repetitions"] == 4  # the assembly's presentations per image
    clean = io.read_dataset(measured / "recordings/clean.nc")
    assert clean.sizes["presentation"] == 4 * N_IMAGES and clean["response"].dtype.kind == "f"
    sensitivity = io.read_dataset(results / "sensitivity/sensitivity.nc")
    assert "black_box:resnet18_linf_eps4_255" in sensitivity["population"].values.tolist()
    transfer = io.read_dataset(results / "sensitivity/transfer.nc")
    assert transfer["subject"].values.tolist() == ["brain", "resnet18_linf_eps4_255"]
    assert np.isnan(transfer["ratio"].sel(subject="brain")).all()  # a real brain has no white box
    assert np.isfinite(transfer["ratio"].sel(subject="resnet18_linf_eps4_255")).all()
    assert "calibrated_low" in transfer  # the real brain's bound over the network's ratio
    assert not (results / "brain/brain.nc").exists()  # the real brain is only ever recorded, never simulated


def test_a_labs_loop_killed_in_round_2s_attacks_resumes_to_an_uninterrupted_runs_outputs(
    mini_run: Path, served: LoopbackServer, tmp_path: Path
) -> None:
    results = Path("results/mini")
    sites = io.read_dataset(mini_run / results / "rounds/round1/site_models.nc")["neuroid_id"].values
    first = rig_table(pd.read_csv(mini_run / results / "rig/round1/stimuli.csv"), sites, tmp_path / "r1.csv")
    # Uninterrupted: round 1's table, then (once round 2's images are exported) round 2's too.
    whole = copy_of(mini_run, tmp_path / "whole")
    run = snakemake(whole, "--cores", "2", configfile=str(mini_config(served, whole, perturbed=[first])))
    assert run.returncode == 0, run.stderr[-5000:]
    second = rig_table(pd.read_csv(whole / results / "rig/round2/stimuli.csv"), sites, tmp_path / "r2.csv")
    run = snakemake(whole, "--cores", "2", configfile=str(mini_config(served, whole, perturbed=[first, second])))
    assert run.returncode == 0, run.stderr[-5000:]
    # Killed: both tables given at once; kill -9 as soon as the first of round 2's attacks is written.
    killed = copy_of(mini_run, tmp_path / "killed")
    both = str(mini_config(served, killed, perturbed=[first, second]))
    profile = ("--profile", str(REPO / "workflow/profiles/default"))  # as a user runs it: rerun-incomplete
    command, env = snakemake_command(killed, *profile, "--cores", "1", configfile=both)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    attacks = killed / results / "rounds/round2/attacks"
    deadline = time.monotonic() + 900
    while not (attacks.is_dir() and any(attacks.glob("image*.nc"))) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before round 2's attacks"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list(attacks.glob("image*.nc"))) < len(list((whole / results / "rounds/round2/attacks").glob("*.nc")))
    unlock = snakemake(killed, *profile, "--unlock", configfile=both)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    resumed = snakemake(killed, *profile, "--cores", "2", configfile=both)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert_same_results(whole / results, killed / results)
