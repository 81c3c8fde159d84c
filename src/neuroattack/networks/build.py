"""What builds the networks: a network from its `Architecture` (the library's own, `models`,
or a user's, `zoo`), from its weights file (netCDF, one variable per tensor), seen at a layer
(`layers`); a user's model's weights file from its `networks` entry; and a network's cost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.config import CHECKPOINT_ARCHITECTURES, MODEL_KINDS, PENULTIMATE, model_kind
from neuroattack.networks.layers import AtLayer
from neuroattack.networks.models import (
    ARCHITECTURE_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Architecture,
    SmallResNet,
    TorchvisionResNet,
)
from neuroattack.networks.zoo import DEFAULT_RESOLUTION, ZooNetwork, load_weights

# Every network neuroattack attacks: x in [0, 1] -> features(x) (n, feature_dim), forward(x) -> logits.
FeatureNetwork: TypeAlias = SmallResNet | TorchvisionResNet | ZooNetwork | AtLayer


def build_network(arch: Architecture) -> FeatureNetwork:
    """The network `arch` describes, with its constructor's initial weights. Besides the small
    ResNets and the checkpoints' ImageNet ResNets, a user's model (`arch.name` one of
    config.MODEL_KINDS: a torchvision or timm model, or a factory function; torchvision or timm
    is imported only to build one)."""
    if arch.name == "small_resnet":
        return SmallResNet(arch)
    if arch.name in CHECKPOINT_ARCHITECTURES:
        return TorchvisionResNet(arch)
    if arch.name in MODEL_KINDS:
        return ZooNetwork(arch)
    raise ValueError(f"unknown architecture {arch.name!r}: use one of {', '.join((*ARCHITECTURE_NAMES, *MODEL_KINDS))}")


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
    return seen_at(network.eval().requires_grad_(False), layer, path)


def seen_at(network: FeatureNetwork, layer: str | None, where: str) -> FeatureNetwork:
    """`network` seen at `layer` (a module name; None or `penultimate`: its own features); a
    layer it lacks is refused naming `where` (a file, an argument)."""
    if layer is None or layer == PENULTIMATE:
        return network
    try:
        return AtLayer(network, layer)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


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


def user_model_weights(
    name: str, settings: Mapping[str, Any], weights_path: str | os.PathLike[str] | None, seed: int
) -> xr.Dataset:
    """The workflow's weights file of `networks.<name>`, a user's model: `settings` is the entry
    (eps, the kind's key, kwargs, input, path; its `layer` is applied where features are
    made); the weights come from `weights_path`, or, without one, from the constructor seeded
    with `seed`."""
    kind = model_kind(settings)
    if kind is None:
        raise ValueError(f"networks.{name}: name the model with one of the keys {', '.join(MODEL_KINDS)}")
    given = settings.get("input", {})
    arch = Architecture(
        name=kind,
        num_classes=0,
        mean=tuple(float(v) for v in given.get("mean", IMAGENET_MEAN)),
        std=tuple(float(v) for v in given.get("std", IMAGENET_STD)),
        extra={
            "model": settings[kind],
            "kwargs": dict(settings.get("kwargs", {})),
            "resolution": int(given.get("resolution", DEFAULT_RESOLUTION)),
            "path": settings.get("path"),
        },
    )
    torch.manual_seed(seed)
    try:
        network = ZooNetwork(arch)
    except (ValueError, TypeError, ImportError) as error:
        raise type(error)(f"networks.{name}: {error}") from error
    if weights_path is not None:
        load_weights(network.model, weights_path)
    attrs = {
        "training_eps": float(settings["eps"]),
        "source_weights": Path(weights_path).name if weights_path is not None else "the constructor's, seeded",
    }
    return weights_to_dataset(network.eval(), arch, attrs)
