"""Networks: small ResNets (residual blocks laid out as torchvision's BasicBlock, so that
jobs on them never import torchvision), torchvision's ImageNet ResNets at paper scale
(ResNet-18, ResNet-50, Wide ResNet-50-2), and their weights stored as netCDF (one
variable per tensor).

Every network takes pixels in [0, 1] and normalises inside, so attacks and
perturbation norms live in pixel space. `features(x)` is the penultimate layer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.config import PENULTIMATE

if TYPE_CHECKING:
    from neuroattack.networks.layers import AtLayer
    from neuroattack.networks.zoo import ZooNetwork

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's ImageNet ResNets by name (the names of `Architecture.name`); torchvision
# is imported only to build one.
TORCHVISION_RESNETS = ("resnet18", "resnet50", "wide_resnet50_2")
ARCHITECTURE_NAMES = ("small_resnet", *TORCHVISION_RESNETS)


@dataclass(frozen=True)
class Architecture:
    """What it takes to rebuild a network from its weights file."""

    name: str = "small_resnet"  # one of ARCHITECTURE_NAMES
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
        if arch.name not in TORCHVISION_RESNETS:
            raise ValueError(f"{arch.name!r} is not a torchvision ResNet: use one of {', '.join(TORCHVISION_RESNETS)}")
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


# Every network neuroattack attacks: x in [0, 1] -> features(x) (n, feature_dim), forward(x) -> logits.
FeatureNetwork: TypeAlias = "SmallResNet | TorchvisionResNet | ZooNetwork | AtLayer"


def build_network(arch: Architecture) -> FeatureNetwork:
    """The network `arch` describes, with its constructor's initial weights. Besides the small
    ResNets and the checkpoints' ImageNet ResNets, a user's model (`arch.name` one of
    zoo.ZOO_KINDS: a torchvision or timm model, or a factory function)."""
    if arch.name == "small_resnet":
        return SmallResNet(arch)
    if arch.name in TORCHVISION_RESNETS:
        return TorchvisionResNet(arch)
    from neuroattack.networks import zoo  # imports torchvision or timm only to build such a model

    if arch.name in zoo.ZOO_KINDS:
        return zoo.ZooNetwork(arch)
    raise ValueError(
        f"unknown architecture {arch.name!r}: use one of {', '.join((*ARCHITECTURE_NAMES, *zoo.ZOO_KINDS))}"
    )


def weights_to_dataset(network: nn.Module, arch: Architecture, attrs: dict[str, Any]) -> xr.Dataset:
    """One variable per state_dict tensor (normaliser buffers excluded: they are in arch)."""
    data_vars = {}
    for name, tensor in network.state_dict().items():
        if name.startswith("normalize."):
            continue
        array = tensor.detach().cpu().numpy()
        dims = [f"{name}_dim{i}" for i in range(array.ndim)]
        data_vars[name] = xr.Variable(dims, array)
    ds = xr.Dataset(data_vars)
    ds.attrs = {"architecture": arch.to_json(), **attrs}
    return ds


def network_from_dataset(ds: xr.Dataset, path: str = "<weights>", layer: str | None = None) -> FeatureNetwork:
    """Rebuild a network (eval mode, no weight gradients) from its weights dataset, seen at
    `layer` (a module name; None or `penultimate`: its own features)."""
    if "architecture" not in ds.attrs:
        raise KeyError(f"{path}: no 'architecture' attribute; not a neuroattack weights file")
    network = build_network(Architecture.from_json(ds.attrs["architecture"]))
    reference = network.state_dict()
    state = {}
    for name, expected in reference.items():
        if name.startswith("normalize."):
            state[name] = expected
            continue
        if name not in ds.variables:
            raise KeyError(f"{path}: weights file lacks tensor {name!r}")
        value = np.asarray(ds[name].values)
        state[name] = torch.from_numpy(value.astype(expected.numpy().dtype, copy=False))
    network.load_state_dict(state, strict=True)
    network.eval().requires_grad_(False)
    if layer is None or layer == PENULTIMATE:
        return network
    from neuroattack.networks.layers import AtLayer  # it imports this module

    try:
        return AtLayer(network, layer)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def count_flops(network: FeatureNetwork, resolution: int) -> int:
    """Multiply-adds x 2 of one forward pass of `features` on one image (convs + linear)."""
    total = 0

    def conv_hook(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * kernel * output[0].numel()

    handles = [m.register_forward_hook(conv_hook) for m in network.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            network.features(torch.zeros(1, 3, resolution, resolution))
    finally:
        for handle in handles:
            handle.remove()
    return total
