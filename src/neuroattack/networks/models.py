"""What the library's own networks are: small ResNets (residual blocks laid out as
torchvision's BasicBlock, so that jobs on them never import torchvision) and torchvision's
ImageNet ResNets at paper scale (ResNet-18, ResNet-50, Wide ResNet-50-2), each described by
an `Architecture`. `networks.build` makes them (and a user's models, `networks.zoo`).

Every network takes pixels in [0, 1] and normalises inside, so attacks and
perturbation norms live in pixel space. `features(x)` is the penultimate layer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neuroattack.config import CHECKPOINT_ARCHITECTURES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The names of `Architecture.name` besides a user's model's kind (config.MODEL_KINDS): the small
# ResNet and torchvision's ImageNet ResNets (torchvision is imported only to build one).
ARCHITECTURE_NAMES = ("small_resnet", *CHECKPOINT_ARCHITECTURES)


@dataclass(frozen=True)
class Architecture:
    """What it takes to rebuild a network from its weights file."""

    name: str = "small_resnet"  # one of ARCHITECTURE_NAMES or config.MODEL_KINDS
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (1, 1, 1)
    num_classes: int = 10
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Architecture:
        raw = json.loads(text)
        for key in ("widths", "blocks", "mean", "std"):
            raw[key] = tuple(raw[key])
        return Architecture(**raw)


class Normalize(nn.Module):
    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut: torchvision's BasicBlock, with the
    same submodule names (conv1, bn1, conv2, bn2, downsample), made in the same order, so the
    same seed gives the same initial weights and the weights files are unchanged."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in place, as torchvision's
        activated: Tensor = self.relu(out)
        return activated


class SmallResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem, one stage per width, global pooling."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.normalize = Normalize(arch.mean, arch.std)
        width = arch.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        in_planes = width
        for index, (planes, count) in enumerate(zip(arch.widths, arch.blocks, strict=True)):
            stride = 1 if index == 0 else 2
            stages.append(self._stage(in_planes, planes, count, stride))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, arch.num_classes)
        self.feature_dim = in_planes

    @staticmethod
    def _stage(in_planes: int, planes: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or in_planes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers: list[nn.Module] = [ResidualBlock(in_planes, planes, stride, downsample)]
        layers += [ResidualBlock(planes, planes) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        hidden = self.stages(self.stem(self.normalize(x)))
        return torch.flatten(self.pool(hidden), 1)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(self.features(x))
        return logits


class TorchvisionResNet(nn.Module):
    """A torchvision ImageNet ResNet (`arch.name`: resnet18, resnet50 or wide_resnet50_2)
    with normalisation in front; its layers live under `model.` with torchvision's
    names; features = the pooled penultimate layer (512-d or 2048-d)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        if arch.name not in CHECKPOINT_ARCHITECTURES:
            raise ValueError(
                f"{arch.name!r} is not a torchvision ResNet: use one of {', '.join(CHECKPOINT_ARCHITECTURES)}"
            )
        from torchvision.models import get_model

        self.normalize = Normalize(arch.mean, arch.std)
        self.model = get_model(arch.name, weights=None, num_classes=arch.num_classes)
        self.feature_dim = self.model.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        m = self.model
        h = m.maxpool(m.relu(m.bn1(m.conv1(self.normalize(x)))))
        h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
        return torch.flatten(m.avgpool(h), 1)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model.fc(self.features(x))
        return logits
