"""Networks users bring: any classification model torchvision's `get_model` builds, any timm
model, or a user's own factory function ("package.module:function"), with weights from a
state_dict file (a torch file read with weights_only=True, or .safetensors).

A `ZooNetwork` takes pixels in [0, 1] at the stimulus set's resolution, resizes them to the
model's own input resolution and normalises them inside (so an attack's budget, eps, stays in
the stimulus set's pixel space whatever the model's resolution). Its `features(x)` is the
penultimate layer: the input of the model's last linear layer (its classifier). Any other
layer is seen through `layers.at_layer`, as for every network.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from neuroattack.config import MODEL_KINDS
from neuroattack.networks.layers import layer_input
from neuroattack.networks.models import Architecture, Normalize

DEFAULT_RESOLUTION = 224  # an ImageNet model's


class WeightsMismatchError(ValueError):
    """A weights file's tensors do not fit the model; the message names the file and the first
    tensor that differs."""


def build_module(kind: str, model: str, kwargs: Mapping[str, Any], search_path: str | None = None) -> nn.Module:
    """The model of a `networks` entry, with its constructor's initial weights: torchvision's
    `get_model(model, weights=None, **kwargs)`, timm's `create_model(model, pretrained=False,
    **kwargs)`, or a user's function "package.module:function" called with kwargs (run as it
    is: it is the user's own code; `search_path` is put first on the import path)."""
    if kind == "torchvision":
        from torchvision.models import get_model, list_models

        if model not in list_models():
            raise ValueError(f"torchvision has no model {model!r}; torchvision.models.list_models() lists them")
        built: nn.Module = get_model(model, weights=None, **kwargs)
        return built
    if kind == "timm":
        import timm

        if not timm.is_model(model):
            raise ValueError(f"timm has no model {model!r}; timm.list_models() lists them")
        created: nn.Module = timm.create_model(model, pretrained=False, **kwargs)
        return created
    if kind == "factory":
        return _factory_module(model, kwargs, search_path)
    raise ValueError(f"unknown kind of network {kind!r}: use one of {', '.join(MODEL_KINDS)}")


def _factory_module(target: str, kwargs: Mapping[str, Any], search_path: str | None) -> nn.Module:
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"factory {target!r}: write it as 'package.module:function'")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        where = f" (looked in {search_path} first)" if search_path else ""
        raise ImportError(
            f"factory {target!r}: cannot import it{where}: {error}; put the module on the workflow's Python "
            "path or give its folder as the entry's `path`"
        ) from error
    module = function(**kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"factory {target!r} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def load_weights(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a state_dict file into `module`: .safetensors, or a torch file read with
    weights_only=True (a plain state_dict, or a dict holding one under 'state_dict' or
    'model'). Every tensor must match by name and shape; else WeightsMismatchError names the
    file and the first tensor that differs."""
    path = Path(path)
    state = _read_state(path)
    expected = module.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            extra = sorted(set(state) - set(expected))[:3]
            raise WeightsMismatchError(
                f"{path}: no tensor {name!r}, which the model has (shape {tuple(tensor.shape)}); "
                f"tensors the model lacks: {extra}; is the file for this model and these kwargs?"
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise WeightsMismatchError(
                f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, the model's has "
                f"{tuple(tensor.shape)}; is the file for this model and these kwargs?"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WeightsMismatchError(
            f"{path}: tensor {unexpected[0]!r} (and {len(unexpected) - 1} more) has no place in the model; "
            "is the file for this model and these kwargs?"
        )
    module.load_state_dict(state, strict=True)


def _read_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the readers raise many unrelated types for a damaged file
        raise ValueError(
            f"{path}: not a readable weights file ({type(error).__name__}: {error}); give a state_dict saved "
            "with torch.save, or a .safetensors file"
        ) from error
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: holds no state_dict (a mapping of tensor names to tensors)")
    return {str(k): v for k, v in loaded.items()}


class ZooNetwork(nn.Module):
    """A user's model behind neuroattack's network interface: pixels in [0, 1] at any
    resolution; `features(x)` = the penultimate layer (the input of the model's last linear
    layer, flattened per image); other layers through `layers.at_layer`."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        extra = arch.extra  # model, kwargs, resolution; a factory's folder as path
        self.normalize = Normalize(arch.mean, arch.std)
        self.model = build_module(arch.name, str(extra["model"]), extra.get("kwargs", {}), extra.get("path"))
        self.resolution = int(extra["resolution"])
        linears = [(name, module) for name, module in self.model.named_modules() if isinstance(module, nn.Linear)]
        # held by name: a copy of the network (the attack's frozen one) hooks its own module
        self.classifier = linears[-1][0] if linears else None
        self.feature_dim = linears[-1][1].in_features if linears else 0
        self.eval()

    def prepared(self, x: Tensor) -> Tensor:
        """Pixels in [0, 1] resized to the model's resolution and normalised."""
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = functional.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        normalized: Tensor = self.normalize(x)
        return normalized

    def features(self, x: Tensor) -> Tensor:
        if self.classifier is None:
            raise ValueError("the model has no linear layer, so no penultimate layer: name a `layer`")
        return layer_input(self.model, self.classifier, self, x)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(self.prepared(x))
        return logits
