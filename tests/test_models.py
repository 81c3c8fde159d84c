"""Networks and their netCDF weights."""

from __future__ import annotations

from pathlib import Path

import torch

from neuroattack import io
from neuroattack.models import Architecture, build_network, count_flops, network_from_dataset, weights_to_dataset


def test_weights_round_trip_through_netcdf(tmp_path: Path) -> None:
    arch = Architecture(widths=(8, 16), blocks=(1, 2), num_classes=5)
    torch.manual_seed(0)
    network = build_network(arch).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
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
