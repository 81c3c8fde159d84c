"""Networks, their netCDF weights, and their frozen copies for attacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuroattack import io
from neuroattack.networks import training
from neuroattack.networks.build import build_network, count_flops, network_from_dataset, weights_to_dataset
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import to_tensor
from neuroattack.networks.training import TrainingSettings, pgd_l2_classification, train_network


def randomize_batchnorm(network: nn.Module) -> None:
    """Non-trivial statistics and affine parameters in every BatchNorm (fresh ones are the identity)."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def test_training_data_round_trips_through_netcdf_unchanged(tmp_path: Path) -> None:
    settings = {"source": "embedded", "train_per_category": 4, "test_per_category": 2, "resolution": 16, "seed": 0}
    made = training.training_set(settings)
    path = tmp_path / "images.nc"
    io.write_dataset(training.labelled_dataset(made), path, "training data", "rule training_data", [], {})
    read = training.labelled_from_dataset(io.read_dataset(path, "training_data"))
    for (pixels, labels), (read_pixels, read_labels) in zip(made[:2], read[:2], strict=True):
        assert read_pixels.dtype == np.uint8 and np.array_equal(read_pixels, pixels)
        assert np.array_equal(read_labels, labels)
    assert read[2] == made[2] and len(read[0][1]) == 4 * len(made[2]) and len(read[1][1]) == 2 * len(made[2])


def test_weights_round_trip_through_netcdf(tmp_path: Path) -> None:
    arch = Architecture(widths=(8, 16), blocks=(1, 2), num_classes=5)
    torch.manual_seed(0)
    network = build_network(arch).eval()
    randomize_batchnorm(network)
    path = io.write_dataset(weights_to_dataset(network, arch, {"training_eps": 0.5}), tmp_path / "w.nc", "w", "test")
    loaded = io.read_dataset(path)
    rebuilt = network_from_dataset(loaded, str(path))
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.features(images), network.features(images))
        torch.testing.assert_close(rebuilt(images), network(images))
    assert loaded.attrs["training_eps"] == 0.5
    assert not any(p.requires_grad for p in rebuilt.parameters())


def test_flop_count_of_a_single_conv_network() -> None:
    network = build_network(Architecture(widths=(4,), blocks=(1,), num_classes=2))
    # stem 3->4 and two 4->4 3x3 convs at 8x8, no downsample
    expected = 2 * 8 * 8 * 4 * (27 + 36 + 36)
    assert count_flops(network, 8) == expected


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


def input_gradient(network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.clone().requires_grad_(True)
    features = network.features(images)
    (gradient,) = torch.autograd.grad(features[:, :3].sum(), images)
    return features.detach(), gradient


@pytest.mark.parametrize(
    ("arch", "resolution"),
    [
        (Architecture(widths=(8, 16, 32), blocks=(2, 1, 1), num_classes=5), 16),
        (Architecture(name="resnet50", num_classes=7), 64),
        (Architecture(name="resnet18", num_classes=7), 32),
    ],
)
def test_frozen_copy_folds_every_batchnorm_and_computes_the_same_function(arch: Architecture, resolution: int) -> None:
    torch.manual_seed(0)
    network = build_network(arch).eval()
    randomize_batchnorm(network)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    frozen = frozen_for_attack(network)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())
    images = torch.rand(3, 3, resolution, resolution)
    features, gradient = input_gradient(network, images)
    frozen_features, frozen_gradient = input_gradient(frozen, images)
    # float32 round-off only: tiny next to the values' scale (a wrong fold is off by O(1))
    assert relative_error(frozen_features, features) < 1e-4
    assert relative_error(frozen_gradient, gradient) < 1e-4
    # the original keeps its BatchNorms and values, and stays trainable
    assert sum(isinstance(m, nn.BatchNorm2d) for m in network.modules()) > 0
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(p.requires_grad for p in network.parameters())


def test_the_small_resnets_block_is_torchvisions_basicblock_in_weights_and_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The small ResNets have their own block (jobs on them skip importing torchvision); the same
    # seed must give the weights and outputs that torchvision's BasicBlock gave, so weights files
    # and every downstream value stay as they were.
    from torchvision.models.resnet import BasicBlock

    from neuroattack.networks import models

    arch = Architecture(widths=(8, 16, 32), blocks=(2, 1, 1), num_classes=12)
    torch.manual_seed(3)
    ours = build_network(arch).eval()
    monkeypatch.setattr(models, "ResidualBlock", BasicBlock)
    torch.manual_seed(3)
    theirs = build_network(arch).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[name]), name
    randomize_batchnorm(ours)
    theirs.load_state_dict(ours.state_dict())
    images = torch.rand(4, 3, 16, 16)
    assert torch.equal(ours(images), theirs(images))
    assert torch.equal(frozen_for_attack(ours).features(images), frozen_for_attack(theirs).features(images))


# --- training precision -------------------------------------------------------------------


def test_training_runs_in_bf16_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert not TrainingSettings(precision="float32").bf16(cpu) and TrainingSettings(precision="bf16").bf16(cpu)
    for native in (True, False):
        monkeypatch.setattr(training, "bf16_is_native", lambda device, native=native: native)
        assert TrainingSettings(precision="auto").bf16(cpu) is native
    assert TrainingSettings().precision == "float32"  # a config without the key trains as before
    with pytest.raises(ValueError, match=r"training\.precision is 'half'"):
        TrainingSettings(precision="half")


def test_bf16_training_keeps_float32_weights_and_its_own_adversarial_examples() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 48)
    arch = Architecture(widths=(8, 16), blocks=(1, 1), num_classes=3)
    trained = {
        precision: train_network(
            arch, (pixels, labels), 1.0, TrainingSettings(epochs=1, batch_size=16, precision=precision), seed=5
        )
        for precision in ("float32", "bf16")
    }
    for network in trained.values():
        assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in network.parameters())
        assert all(b.dtype == torch.float32 for b in network.buffers() if b.is_floating_point())  # BatchNorm
    first = [p for p in trained["float32"].parameters()]
    second = [p for p in trained["bf16"].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))  # other examples, other weights
    images = to_tensor(pixels[:8])
    generator = torch.Generator().manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adversarial = pgd_l2_classification(trained["bf16"], images, torch.from_numpy(labels[:8]), 1.0, 3, generator)
    assert adversarial.dtype == torch.float32
    assert float((adversarial - images).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-5
