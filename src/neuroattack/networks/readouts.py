"""Differentiable unit responses that the attack engine can target, row by row.

Each is a module whose forward(images, target) returns one response per row:
the target-th penultimate unit of a network, or the target-th site of a linear
(optionally rectified) readout of a network's penultimate features. Each holds a
copy of its network made for input gradients (`frozen.frozen_for_attack`: eval
mode, BatchNorm folded, channels_last); the network passed in is not changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from neuroattack.networks.build import FeatureNetwork
from neuroattack.networks.frozen import frozen_for_attack


class UnitResponse(nn.Module):
    """A network's own penultimate unit `target` (white box)."""

    def __init__(self, network: FeatureNetwork) -> None:
        super().__init__()
        self.network = frozen_for_attack(network)

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        features = self.network.features(images)
        return features.gather(1, target.view(-1, 1)).squeeze(1)


class LinearSiteResponse(nn.Module):
    weight: Tensor  # (sites, features), a buffer
    bias: Tensor  # (sites,), a buffer

    """Site `target` = weight[target] . features + bias[target], then an optional
    softplus rectifier scaled to counts: baseline + gain * softplus(beta * drive) / beta."""

    def __init__(
        self,
        network: FeatureNetwork,
        weight: np.ndarray,
        bias: np.ndarray,
        rectify: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.network = frozen_for_attack(network)
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight, dtype=np.float32)))
        self.register_buffer("bias", torch.as_tensor(np.asarray(bias, dtype=np.float32)))
        self.rectify = rectify

    def drive(self, features: Tensor, target: Tensor) -> Tensor:
        return (features * self.weight[target]).sum(dim=1) + self.bias[target]

    def rate(self, drive: Tensor) -> Tensor:
        if self.rectify is None:
            return drive
        beta = self.rectify["beta"]
        return self.rectify["baseline"] + self.rectify["gain"] * functional.softplus(beta * drive) / beta

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        return self.rate(self.drive(self.network.features(images), target))

    @torch.no_grad()
    def all_sites(self, images: Tensor) -> Tensor:
        """(images, sites) responses of every site."""
        features = self.network.features(images)
        return self.rate(features @ self.weight.T + self.bias)


class MeanResponse(nn.Module):
    """The mean of several responses of the same targets (an ensemble surrogate): row i's
    response is the mean of every member's response to (images[i], target[i])."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        return torch.stack([member(images, target) for member in self.members]).mean(dim=0)


INFERENCE_BATCH = 256  # images per forward pass when no gradient is needed


def image_batches(
    pixels: np.ndarray, device: torch.device | None = None, batch_size: int = INFERENCE_BATCH
) -> Iterator[tuple[slice, Tensor]]:
    """(rows, images in [0, 1] on `device`) for consecutive batches of uint8 images (n, H, W, C)."""
    device = device or torch.device("cpu")
    for start in range(0, len(pixels), batch_size):
        rows = slice(start, start + batch_size)
        yield rows, to_tensor(pixels[rows]).to(device)


def infer(
    function: Callable[[Tensor], Tensor],
    pixels: np.ndarray,
    device: torch.device | None = None,
    batch_size: int = INFERENCE_BATCH,
) -> np.ndarray:
    """function(images) over uint8 images (n, H, W, C) in batches, without gradients:
    float32 (n, ...) on the host. `function`'s module must already live on `device`."""
    if len(pixels) == 0:
        raise ValueError("no images to run the network on")
    with torch.no_grad():
        parts = [function(images).float().cpu().numpy() for _, images in image_batches(pixels, device, batch_size)]
    return np.concatenate(parts)


def to_tensor(pixels: np.ndarray) -> Tensor:
    """uint8 (n, H, W, C) -> float (n, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
