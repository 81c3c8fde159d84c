"""Frozen copies of networks, made for input gradients (the attack's only gradients).

`frozen_for_attack` folds every BatchNorm into the convolution before it (torch's
`fuse_conv_bn_eval`) and stores weights in channels_last memory. The copy computes
the same function, and the same input gradient, up to float round-off. On CPU,
folding alone made torchattacks' PGDL2 1.2-1.3x faster (benchmarks/README.md).
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from neuroattack.networks.models import ResidualBlock

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _resnet_parts() -> tuple[type[nn.Module], ...]:
    """Module classes whose forward() applies bn{i} right after conv{i}: the small ResNets'
    block, and torchvision's ResNet parts where torchvision is loaded (a network made of
    them can only exist then; a frozen small ResNet never imports it)."""
    torchvision_resnet = sys.modules.get("torchvision.models.resnet")
    if torchvision_resnet is None:
        return (ResidualBlock,)
    return (ResidualBlock, torchvision_resnet.BasicBlock, torchvision_resnet.Bottleneck, torchvision_resnet.ResNet)


def conv_bn_pairs(network: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """(parent, conv name, batchnorm name) for every BatchNorm that directly follows a
    convolution: adjacent in an nn.Sequential, or conv{i} -> bn{i} in a ResNet's stem and
    residual blocks (torchvision's ResNet, BasicBlock and Bottleneck, and the small
    ResNets' ResidualBlock: that is how their forward() composes them)."""
    resnet_parts = _resnet_parts()
    for parent in network.modules():
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    yield parent, conv_name, bn_name
        elif isinstance(parent, resnet_parts):
            for index in (1, 2, 3):
                if isinstance(getattr(parent, f"bn{index}", None), nn.BatchNorm2d):
                    yield parent, f"conv{index}", f"bn{index}"


def frozen_for_attack(network: ModuleT) -> ModuleT:
    """A copy of `network` for input-gradient work: eval mode, no weight gradients,
    BatchNorms folded into convolutions, channels_last weights. The network passed
    in is left untouched."""
    frozen = copy.deepcopy(network).eval().requires_grad_(False)
    for parent, conv_name, bn_name in list(conv_bn_pairs(frozen)):
        folded = fuse_conv_bn_eval(getattr(parent, conv_name), getattr(parent, bn_name))
        setattr(parent, conv_name, folded.requires_grad_(False))
        setattr(parent, bn_name, nn.Identity())
    return frozen.to(memory_format=torch.channels_last)
