"""The in-silico monkey's network: any kind of network the `networks` section takes (a small
ResNet the workflow trains, a torchvision or timm model, a factory, a checkpoint), read out
at its `layer`; bad entries refused at start naming `brain.network`."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from test_zoo import FACTORY, factory_entry, resnet18_entry, zoo
from workflow_helpers import REPO, job_counts, snakemake

from neuroattack import io
from neuroattack.brain.simulated import build_brain, expected_responses, record, with_matched_noise
from neuroattack.config import BRAIN, ConfigError, own_layer
from neuroattack.config_checks import checked_config
from neuroattack.data.recordings import split_half_reliability
from neuroattack.downloaded_files import downloads
from neuroattack.jobs import brain_settings, network_spec, user_model_settings
from neuroattack.networks.build import build_network, weights_to_dataset
from neuroattack.networks.readouts import infer
from neuroattack.plan import run_plan

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
CHECKPOINT = {"url": "https://example.org/brain.ckpt", "sha256": None}


def with_brain(network: dict[str, Any]) -> dict[str, Any]:
    """The tiny config with `network` as the brain's."""
    config: dict[str, Any] = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["brain"]["network"] = network
    return config


def refusal(config: dict[str, Any]) -> str:
    """The message of the config's refusal at start (it must be refused)."""
    with pytest.raises(ConfigError) as refused:
        checked_config(config, SCHEMA)
    return str(refused.value)


# --- the plan: which rule makes the brain's network ----------------------------------------


def test_the_default_brain_is_trained_with_its_own_widths_and_reads_out_its_penultimate_layer() -> None:
    config = checked_config(with_brain({"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 1]}), SCHEMA)
    run = run_plan(config)
    assert BRAIN in run.trained and BRAIN not in run.imported + run.downloaded + run.networks
    assert network_spec(config, BRAIN) == {"blocks": [1, 1], "eps": 0.5, "seed": 101, "widths": [8, 16]}
    assert own_layer(config, BRAIN) == "penultimate" and "layer" not in brain_settings(config)
    # the default layer written out changes no setting: no rerun
    config["brain"]["network"]["layer"] = "penultimate"
    assert brain_settings(config) == brain_settings(checked_config(with_brain(config["brain"]["network"]), SCHEMA))
    config["brain"]["network"]["layer"] = "stages.0"
    assert brain_settings(config)["layer"] == "stages.0"


def test_a_brain_of_a_users_model_is_imported_with_its_weights_downloaded(tmp_path: Path) -> None:
    config = checked_config(with_brain(resnet18_entry(tmp_path, layer="layer3", eps=0)), SCHEMA)
    run = run_plan(config)
    assert run.imported == (BRAIN,) and BRAIN not in run.trained + run.downloaded
    assert downloads(config)["weights/brain.safetensors"] == ["brain", "network", "weights"]
    settings = user_model_settings(config, BRAIN)
    assert settings["torchvision"] == "resnet18" and "layer" not in settings and "weights" not in settings
    assert settings["eps"] == 0.0 and isinstance(settings["eps"], float)  # typed by the schema: 0 and 0.0 agree
    assert brain_settings(config)["layer"] == "layer3"


def test_a_brain_from_a_checkpoint_is_converted_and_with_real_recordings_nothing_of_it_is_built() -> None:
    config = checked_config(with_brain({"eps": 3, "checkpoint": CHECKPOINT, "architecture": "resnet18"}), SCHEMA)
    assert run_plan(config).downloaded == (BRAIN,)
    assert downloads(config)["checkpoints/brain.ckpt"] == ["brain", "network", "checkpoint"]
    recorded = copy.deepcopy(config)
    recorded["recordings"] = {"source": "table", "path": "rig.csv"}
    assert BRAIN not in run_plan(recorded).downloaded and "checkpoints/brain.ckpt" not in downloads(recorded)


def test_a_dry_run_with_a_torchvision_brain_imports_it_and_trains_only_the_networks(tmp_path: Path) -> None:
    config = with_brain(resnet18_entry(tmp_path, layer="layer3"))
    path = tmp_path / "brain.yaml"
    path.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path / "run", "--dry-run", "--cores", "1", configfile=str(path))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    counts = job_counts(run.stdout)
    assert counts["import_network"] == 1 and counts["download"] == 1 and counts["build_brain"] == 1
    assert counts["train_network"] == len(config["networks"])  # the brain's network is not trained
    assert re.search(r"rule import_network:.*?wildcards: network=brain", run.stdout, re.DOTALL), run.stdout[-3000:]


# --- refused at start, naming the key -------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "named"),
    [
        # an unknown kind of model
        (
            {"eps": 0.0, "keras": "resnet18"},
            r"brain\.network\.keras = \"resnet18\": unknown key \(allowed here: eps, seed",
        ),
        # a model named two ways at once
        (
            {"eps": 0.0, "torchvision": "resnet18", "timm": "resnet10t"},
            r"brain\.network = .*: needs exactly one of the keys seed or checkpoint or torchvision or timm or factory",
        ),
        # a small ResNet with a user's model's key
        (
            {"eps": 0.0, "seed": 1, "widths": [8], "blocks": [1], "torchvision": "resnet18"},
            r"brain\.network\.torchvision = \"resnet18\": unknown key "
            r"\(allowed here: eps, seed, widths, blocks, layer\)",
        ),
        ({"eps": 0.0, "seed": 1, "widths": [8]}, r"brain\.network\.blocks: missing \(a required key\)"),
        ({"eps": 0.0, "factory": "my_lab_nets.tiny"}, r"brain\.network\.factory = \"my_lab_nets\.tiny\": allowed"),
        ({"eps": -1.0, "torchvision": "resnet18"}, r"brain\.network\.eps = -1\.0: allowed: a number >= 0"),
        # layers that cannot exist: not a module name, a stage or block the small ResNet lacks
        ({"eps": 0.0, "timm": "resnet10t", "layer": "layer 3"}, r"brain\.network\.layer = \"layer 3\": allowed"),
        (
            {"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 1], "layer": "stages.2"},
            r"brain\.network\.layer = 'stages\.2': brain\.network\.widths gives 2 stage\(s\): name stages\.0 to "
            r"stages\.1",
        ),
        (
            {"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 2], "layer": "stages.1.2.conv1"},
            r"brain\.network\.layer = 'stages\.1\.2\.conv1': brain\.network\.blocks gives stage 1 2 block\(s\): "
            r"name stages\.1\.0 to stages\.1\.1",
        ),
        (
            {"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 1], "layer": "layer3"},
            r"brain\.network\.layer = 'layer3': a small ResNet has no such module; name one under normalize, stem",
        ),
    ],
)
def test_a_bad_brain_network_is_refused_at_start_naming_the_key(network: dict[str, Any], named: str) -> None:
    message = refusal(with_brain(network))
    assert re.search(named, message), message


def test_a_second_network_named_brain_is_refused() -> None:
    config = with_brain({"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 1]})
    config["networks"]["brain"] = {"eps": 0.0, "seed": 2}
    assert re.search(r"networks: the name \"brain\" is not allowed", refusal(config))


def test_training_is_needed_only_where_a_network_is_trained(tmp_path: Path) -> None:
    config = with_brain(factory_entry(tmp_path))
    config["networks"] = {"labnet": factory_entry(tmp_path, kwargs={"width": 5})}
    config["surrogate"]["network"] = "labnet"
    for section in ("architecture", "training", "training_data"):
        del config[section]
    checked_config(config, SCHEMA)  # nothing is trained: no training section needed
    config["brain"]["network"] = {"eps": 0.5, "seed": 101, "widths": [8, 16], "blocks": [1, 1]}
    message = refusal(config)
    assert "key 'training' is required because recordings.source is 'simulated' and brain.network is trained" in message


# --- the brain itself -------------------------------------------------------------------------


def factory_brain(folder: Path, layer: str) -> Any:
    """A brain of 5 sites on the factory's network (FACTORY, width 6, input 8 px) at `layer`,
    calibrated on random images."""
    (folder / "my_lab_nets.py").write_text(FACTORY)
    arch = zoo("factory", "my_lab_nets:tiny", resolution=8, kwargs={"width": 6}, path=str(folder))
    weights = weights_to_dataset(build_network(arch), arch, {})
    pixels = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    brain = build_brain(weights, pixels, 5, 3.0, 0.5, 2.0, -0.5, seed=7, layer=layer)
    return brain, pixels


def test_a_factory_brain_reads_out_its_layer_and_records_what_its_white_box_expects(tmp_path: Path) -> None:
    brain, pixels = factory_brain(tmp_path, "1")  # the ReLU after the 3x3 convolution: 6 x 6 x 6 at 8 px
    assert brain["readout_weight"].shape == (5, 6 * 6 * 6) and brain.attrs["layer"] == "1"
    penultimate, _ = factory_brain(tmp_path, "penultimate")
    assert penultimate["readout_weight"].shape == (5, 6)
    expected = infer(expected_responses(brain).all_sites, pixels)
    assert np.isfinite(expected).all() and np.allclose(expected.mean(), 3.0, rtol=1e-3)
    counts = record(brain, pixels, [f"s{i}" for i in range(len(pixels))], repetitions=400, seed=1)
    recorded = counts["response"].values.reshape(400, len(pixels), 5).mean(axis=0)
    np.testing.assert_allclose(recorded, expected, atol=0.5)  # Poisson means of 400 repetitions
    with pytest.raises(ValueError, match=r"brain\.network: .*no layer 'fc'; its layers are"):
        factory_brain(tmp_path, "fc")


def test_matched_noise_gives_each_site_one_of_the_recorded_reliabilities(tmp_path: Path) -> None:
    brain, _ = factory_brain(tmp_path, "1")
    pixels = np.random.default_rng(3).integers(0, 256, (300, 16, 16, 3), dtype=np.uint8)
    recorded = np.array([0.2, 0.45, 0.6, 0.8, 0.93])  # what a rig's sites measured
    matched = with_matched_noise(brain, pixels, recorded, repetitions=8, seed=5)
    np.testing.assert_allclose(np.sort(matched["matched_reliability"].values), recorded, rtol=1e-6)
    assert matched.attrs["repetitions"] == 8 and "noise_sd" not in brain  # the brain given is untouched
    recordings = record(matched, pixels, [f"s{i}" for i in range(len(pixels))], repetitions=8, seed=2)
    measured = split_half_reliability(recordings, n_splits=20, seed=0).values
    np.testing.assert_allclose(measured, matched["matched_reliability"].values, atol=0.08)
    assert not np.allclose(recordings["response"].values, np.round(recordings["response"].values))  # not counts
    with pytest.raises(ValueError, match="4 reliabilities for 5 sites"):
        with_matched_noise(brain, pixels, recorded[:4], repetitions=8, seed=5)


@pytest.mark.slow
def test_a_factory_brain_records_is_attacked_and_has_a_white_box(tmp_path: Path) -> None:
    config = with_brain(factory_entry(tmp_path, input={"resolution": 16}, layer="1"))
    path = tmp_path / "brain.yaml"
    path.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    results = workdir / config["results"]
    targets = ["validation/brain_white_box.nc", "recordings/round2.nc", "rounds/round2/sensitivity.nc"]
    run = snakemake(
        workdir, "--cores", "2", *(f"{config['results']}/{target}" for target in targets), configfile=str(path)
    )
    assert run.returncode == 0, run.stderr[-5000:]
    network = io.read_dataset(results / "networks/brain.nc", "network")
    assert '"factory"' in network.attrs["architecture"]  # imported, not trained
    brain = io.read_dataset(results / "brain/brain.nc", "brain")
    assert brain.attrs["layer"] == "1" and brain["readout_weight"].shape == (6, 6 * 14 * 14)
    white_box = io.read_dataset(results / "validation/brain_white_box.nc")
    assert np.isfinite(white_box["change"].values).all() and (np.abs(white_box["change"].values) > 0).any()
    for recorded in ("clean", "round1", "round2"):
        assert io.read_dataset(results / f"recordings/{recorded}.nc")["response"].sizes["site"] == 6
    sensitivity = io.read_dataset(results / "rounds/round2/sensitivity.nc")
    assert any(np.isfinite(sensitivity[name].values).any() for name in sensitivity.data_vars)
