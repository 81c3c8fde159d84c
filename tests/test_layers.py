"""Every network at any of its layers: the workflow's own small ResNets and the checkpoints'
torchvision ResNets as well as users' models (tests/test_zoo.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from neuroattack.config import PENULTIMATE
from neuroattack.jobs import network_layer, user_model_settings
from neuroattack.networks.build import build_network, network_from_dataset, weights_to_dataset
from neuroattack.networks.features import extract_features, features_layer
from neuroattack.networks.layers import AtLayer, at_layer, layer_names
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import UnitResponse

SMALL = Architecture(widths=(4, 8), blocks=(1, 1))


def small_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    network = build_network(SMALL)
    for module in network.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return network.eval()


def test_a_small_resnet_at_a_stage_gives_that_stages_feature_map_flattened() -> None:
    network = small_network()
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected = network.stages[0](network.stem(network.normalize(images)))
        seen = at_layer(network, "stages.0").features(images)
    assert seen.shape == (3, 4 * 16 * 16)  # channel x position
    torch.testing.assert_close(seen, expected.flatten(1))
    assert at_layer(network, PENULTIMATE) is network and at_layer(network, None) is network


def test_a_checkpoint_resnet_names_its_layers_as_torchvision_does() -> None:
    torch.manual_seed(0)
    network = build_network(Architecture(name="resnet18", num_classes=10)).eval()
    images = torch.rand(2, 3, 32, 32)
    model = network.model
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(network.normalize(images)))))
        torch.testing.assert_close(
            at_layer(network, "layer2").features(images), model.layer2(model.layer1(stem)).flatten(1)
        )
    assert "layer4.1.bn2" in layer_names(network) and layer_names(network)[0] == PENULTIMATE


@pytest.mark.parametrize(
    ("arch", "layer", "instead"),
    [
        (SMALL, "stem.0", "stem.1"),
        (SMALL, "stages.1.0.conv2", "stages.1.0.bn2"),
        (Architecture(name="resnet18", num_classes=10), "conv1", "bn1"),
        (Architecture(name="resnet18", num_classes=10), "layer1.0.conv1", "layer1.0.bn1"),
    ],
)
def test_a_convolution_the_attack_folds_batchnorm_into_is_refused_naming_the_batchnorm(
    arch: Architecture, layer: str, instead: str
) -> None:
    with pytest.raises(ValueError, match=rf"name the BatchNorm \({instead}\) or the block instead"):
        at_layer(build_network(arch), layer)


def test_a_wrong_layer_name_lists_the_layers_that_exist_and_names_the_weights() -> None:
    weights = weights_to_dataset(small_network(), SMALL, {})
    with pytest.raises(
        ValueError,
        match=r"standard: the network has no layer 'layer3'; its layers are \['penultimate', 'normalize', 'stem'",
    ):
        network_from_dataset(weights, "standard", "layer3")


def test_the_attacks_frozen_copy_of_a_layer_gives_its_units_and_their_gradients() -> None:
    network = at_layer(small_network(), "stages.1")
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    target = torch.tensor([3, 100])
    unit = network.features(images).gather(1, target.view(-1, 1)).squeeze(1)
    (gradient,) = torch.autograd.grad(unit.sum(), images)
    copy = images.detach().clone().requires_grad_(True)
    response = UnitResponse(network)  # BatchNorm folded, channels_last
    frozen_unit = response(copy, target)
    (frozen_gradient,) = torch.autograd.grad(frozen_unit.sum(), copy)
    torch.testing.assert_close(frozen_unit, unit.detach(), rtol=1e-4, atol=1e-5)
    assert (frozen_gradient - gradient).abs().max() <= 1e-4 * gradient.abs().max()
    assert isinstance(response.network, AtLayer) and response.network.layer == "stages.1"


def test_features_keep_their_layer_for_every_job_that_rebuilds_the_network() -> None:
    weights = weights_to_dataset(small_network(), SMALL, {})
    stimuli = xr.Dataset(
        {"pixels": (("stimulus_id", "y", "x", "channel"), np.random.default_rng(0).random((5, 16, 16, 3)))},
        coords={"stimulus_id": [f"s{i}" for i in range(5)]},
    )
    at_stage = extract_features(weights, stimuli, "standard", layer="stages.0")
    assert at_stage.attrs["layer"] == "stages.0" and at_stage.sizes["unit"] == 4 * 16 * 16
    penultimate = extract_features(weights, stimuli, "standard")
    assert features_layer(penultimate) == PENULTIMATE and penultimate.sizes["unit"] == 8
    del penultimate.attrs["layer"]  # a file written before layers were named
    assert features_layer(penultimate) == PENULTIMATE
    with pytest.raises(ValueError, match=r"networks.standard.layer: standard: the network has no layer 'fc1'"):
        extract_features(weights, stimuli, "standard", layer="fc1")


def test_a_networks_layer_is_read_from_its_entry_and_never_reruns_an_import() -> None:
    config = {
        "networks": {
            "standard": {"eps": 0.0, "seed": 1},
            "mine": {"eps": 0.0, "torchvision": "resnet18", "layer": "layer3"},
        }
    }
    assert network_layer(config, "standard") == PENULTIMATE and network_layer(config, "mine") == "layer3"
    without_layer = {"networks": {"mine": {"eps": 0.0, "torchvision": "resnet18"}}}
    assert user_model_settings(config, "mine") == user_model_settings(without_layer, "mine")
