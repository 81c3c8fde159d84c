"""A network seen at one of its layers: `features(x)` is that layer's output, flattened per
image (Brain-Score's convention: channel x position for a feature map, token x channel for
a transformer block).

Layers are named as the model names its own modules (`named_modules()`): a torchvision or
timm model's names (`layer3`, `blocks.6`), a checkpoint ResNet's torchvision names, a small
ResNet's (`stem`, `stages.0`, `stages.1.0`). The default, `penultimate`, is the network's
own `features`: the input of its classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuroattack.config import PENULTIMATE
from neuroattack.networks.frozen import conv_bn_pairs

__all__ = ["PENULTIMATE", "AtLayer", "at_layer", "check_layer", "layer_names"]


class _Reached(Exception):
    """Raised by a layer's hook: the rest of the model is not needed."""


def layer_root(network: nn.Module) -> nn.Module:
    """The module whose names a layer uses: the wrapped model of a network that puts its
    normaliser in front of one (`model`), else the network itself."""
    model = getattr(network, "model", None)
    return model if isinstance(model, nn.Module) else network


def layer_names(network: nn.Module) -> list[str]:
    """Every name a `layer` may take for this network, in the model's order."""
    return [PENULTIMATE, *(name for name, _ in layer_root(network).named_modules() if name)]


def check_layer(network: nn.Module, layer: str) -> None:
    """ValueError unless `layer` names a module of the network (the message lists names that
    exist), or names a convolution whose BatchNorm the attack's frozen copy folds into it
    (its output differs there: name the BatchNorm instead)."""
    if layer == PENULTIMATE:
        return
    root = layer_root(network)
    try:
        root.get_submodule(layer)
    except AttributeError as error:
        names = layer_names(network)
        shown = names if len(names) <= 40 else [*names[:20], "...", *names[-19:]]
        raise ValueError(
            f"the network has no layer {layer!r}; its layers are {shown} (print(model) shows them all)"
        ) from error
    for parent, conv_name, bn_name in conv_bn_pairs(root):
        if parent.get_submodule(conv_name) is root.get_submodule(layer):
            prefix = layer.rpartition(".")[0]
            raise ValueError(
                f"layer {layer!r} is a convolution followed by BatchNorm, which the attack folds into it; "
                f"name the BatchNorm ({f'{prefix}.' if prefix else ''}{bn_name}) or the block instead"
            )


def layer_output(root: nn.Module, layer: str, run: nn.Module, x: Tensor) -> Tensor:
    """Module `layer` of `root`'s output (its first element, for a module that returns a
    tuple) when `run(x)` runs, flattened per image; the rest of the forward pass is skipped."""

    def hook(module: nn.Module, keep: list[Tensor]) -> RemovableHandle:
        def keep_output(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
            keep.append(output[0] if isinstance(output, tuple | list) else output)
            raise _Reached

        return module.register_forward_hook(keep_output)

    return _captured(root, layer, run, x, hook)


def layer_input(root: nn.Module, layer: str, run: nn.Module, x: Tensor) -> Tensor:
    """As layer_output, for the input of module `layer` (a classifier's input: the penultimate
    layer of a model that has no `features` of its own)."""

    def hook(module: nn.Module, keep: list[Tensor]) -> RemovableHandle:
        def keep_input(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
            keep.append(inputs[0])
            raise _Reached

        return module.register_forward_pre_hook(keep_input)

    return _captured(root, layer, run, x, hook)


def _captured(
    root: nn.Module,
    layer: str,
    run: nn.Module,
    x: Tensor,
    hook: Callable[[nn.Module, list[Tensor]], RemovableHandle],
) -> Tensor:
    captured: list[Tensor] = []
    handle = hook(root.get_submodule(layer), captured)
    try:
        run(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer!r} was not reached by the model's forward pass")
    return captured[0].flatten(1)


class AtLayer(nn.Module):
    """`network` with `features(x)` = its layer `layer`'s output, flattened; `forward` is the
    network's. The layer is held by name, so a copy (the attack's frozen one) hooks its own."""

    def __init__(self, network: nn.Module, layer: str) -> None:
        super().__init__()
        check_layer(network, layer)
        self.network = network
        self.layer = layer

    def features(self, x: Tensor) -> Tensor:
        return layer_output(layer_root(self.network), self.layer, self.network, x)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.network(x)
        return logits


def at_layer(network: nn.Module, layer: str | None) -> nn.Module:
    """`network` seen at `layer`: itself for the penultimate layer (or None), else AtLayer."""
    if layer is None or layer == PENULTIMATE:
        return network
    return AtLayer(network, layer)
