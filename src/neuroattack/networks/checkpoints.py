"""Robustness-library checkpoints (Engstrom et al.; Salman et al. 2020; L2 or L-infinity;
torchvision ResNet-18, ResNet-50 or Wide ResNet-50-2), converted once to weights as netCDF."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from neuroattack.config import (
    CHECKPOINT_ARCHITECTURES,
    DEFAULT_CHECKPOINT_ARCHITECTURE,
    DEFAULT_NORM,
    NORMS,
)
from neuroattack.networks.build import build_network, weights_to_dataset
from neuroattack.networks.models import IMAGENET_MEAN, IMAGENET_STD, Architecture


def robust_architecture(name: str) -> Architecture:
    """A paper-scale network: torchvision's `name` (resnet18, resnet50, wide_resnet50_2) on
    ImageNet (mean/std are replaced by the normaliser stored in the checkpoint when it has one)."""
    if name not in CHECKPOINT_ARCHITECTURES:
        raise ValueError(f"architecture {name!r}: a checkpoint holds one of {', '.join(CHECKPOINT_ARCHITECTURES)}")
    return Architecture(name=name, num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD)


ROBUST_RESNET50 = robust_architecture("resnet50")


def _load_checkpoint(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint; run the download rule first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # a truncated zip archive makes torch's reader fail with a bare OSError (errno 22)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, OSError) as error:
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({error}). Only tensors and plain "
            "containers are accepted, so no code in a pickle ever runs; if you trust the file, re-save its "
            "state_dict with torch.save on a separate machine and convert that"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    return checkpoint


def _state_dict(checkpoint: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict"):  # the robustness library reads 'model', legacy files 'state_dict'
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    else:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            state = checkpoint
        else:
            raise KeyError(
                f"{path}: no 'model' or 'state_dict' entry (keys: {sorted(map(str, checkpoint))[:10]}); "
                "not a robustness-library checkpoint"
            )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(state):
        raise ValueError(f"{path}: the state dict holds entries that are not tensors")
    return tensors


def _split_robustness_keys(
    state: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(classifier tensors keyed like torchvision's resnet, normaliser tensors).

    Layout written by the robustness library (a DataParallel-wrapped AttackerModel):
    module.model.<layer> (the classifier), module.attacker.model.<layer> (the same
    tensors again, held by the attacker), module.normalizer.new_mean/new_std and
    module.attacker.normalize.new_mean/new_std. A bare torchvision state dict
    (conv1.weight, ...) is accepted too.
    """
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    classifier: dict[str, torch.Tensor] = {}
    normaliser: dict[str, torch.Tensor] = {}
    unexpected = []
    wrapped = any(k.startswith(("model.", "attacker.", "normalizer.")) for k in state)
    for key, tensor in state.items():
        if not wrapped:
            classifier[key] = tensor
        elif key.startswith("model."):
            classifier[key[len("model.") :]] = tensor
        elif key.startswith("normalizer."):
            normaliser[key[len("normalizer.") :]] = tensor
        elif key.startswith("attacker."):
            continue  # a second reference to the classifier and normaliser
        else:
            unexpected.append(key)
    if unexpected:
        raise KeyError(f"{path}: unexpected key(s) {unexpected[:5]} beside module.model./module.attacker.")
    return classifier, normaliser


def _float32_tuple(tensor: torch.Tensor) -> tuple[float, ...]:
    """Channel values as the shortest decimals that give back the same float32."""
    return tuple(float(str(np.float32(v))) for v in tensor.detach().flatten().tolist())


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the configured architecture; the message names the
    file, the first tensor that differs (expected and found shape) and what to change."""


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _torchvision_shapes(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of torchvision's `name` with `num_classes` classes (built on the meta
    device: no memory, no time)."""
    from torchvision.models import get_model

    with torch.device("meta"):
        network = get_model(name, weights=None, num_classes=num_classes)
    return _shapes(network.state_dict())


def _first_difference(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    """The first tensor, in the network's order, that `found` lacks or holds with another shape."""
    for key, shape in expected.items():
        if key not in found:
            return f"tensor {key} is expected with shape {shape} but the checkpoint has no such tensor"
        if found[key] != shape:
            return f"tensor {key} is expected with shape {shape} but has shape {found[key]} in the checkpoint"
    key = next(k for k in found if k not in expected)
    return f"the checkpoint holds tensor {key} (shape {found[key]}), which the architecture has no place for"


def _check_architecture(
    classifier: Mapping[str, torch.Tensor],
    inner: Mapping[str, torch.Tensor],
    arch: Architecture,
    path: Path,
    setting: str,
) -> None:
    """Raise CheckpointMismatchError unless `classifier` has exactly the tensors of `inner`."""
    # Every tensor as the architecture has it, except that BatchNorm counters may be absent (old
    # checkpoints lack them); a counter that is there must fit too.
    found = {k: tuple(v.shape) for k, v in classifier.items()}
    expected = {k: tuple(v.shape) for k, v in inner.items() if k in found or not k.endswith("num_batches_tracked")}
    if found == expected:
        return
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    detail = _first_difference(expected, found)
    if missing or unexpected:
        detail += (
            f" (in all: {len(missing)} tensor(s) missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    else:
        differing = sum(found[k] != v for k, v in expected.items())
        detail += f" ({differing} tensor(s) differ in shape)"
    classes = found.get("fc.weight", (arch.num_classes,))[0]
    fits = [name for name in CHECKPOINT_ARCHITECTURES if _torchvision_shapes(name, classes) == _shapes(classifier)]
    if fits and fits[0] != arch.name:
        advice = f"The checkpoint holds a {fits[0]}: set {setting} to {fits[0]}"
        if classes != arch.num_classes:
            advice += f" (it has {classes} classes, not {arch.num_classes}: is it an ImageNet checkpoint?)"
    elif fits:
        advice = (
            f"It is a {arch.name} with {classes} classes, not {arch.num_classes}: give the checkpoint of a model "
            f"trained on ImageNet ({arch.num_classes} classes)"
        )
    else:
        advice = (
            f"It matches none of {', '.join(CHECKPOINT_ARCHITECTURES)} with {classes} classes: check that the "
            f"file is a robustness-library ImageNet checkpoint of one of them and set {setting} to the one it holds"
        )
    raise CheckpointMismatchError(
        f"{path}: the checkpoint does not hold a {arch.name} with {arch.num_classes} classes, which {setting} "
        f"asks for: {detail}. {advice}"
    )


def robust_checkpoint_to_weights(
    path: str | os.PathLike[str],
    arch: Architecture = ROBUST_RESNET50,
    attrs: Mapping[str, Any] | None = None,
    setting: str = "the architecture",
) -> xr.Dataset:
    """A robustness-library checkpoint (pickled, loaded with weights_only=True)
    as a weights dataset for `build.network_from_dataset`.

    The attacker's copy is dropped, the `module.model.` prefix stripped, and the
    checkpoint's normaliser (new_mean/new_std) becomes the architecture's
    mean/std (`arch`'s own are kept only when the checkpoint has none). The
    tensors must match `arch`'s network exactly: no missing, unexpected or
    differently shaped tensor, except BatchNorm `num_batches_tracked` counters,
    which very old checkpoints lack and which are set to 0 (unused in eval mode).
    Otherwise CheckpointMismatchError names the file, the first tensor that
    differs with its expected and found shape, the architecture the checkpoint
    does hold if it is one of CHECKPOINT_ARCHITECTURES, and `setting` (the config
    key that chose `arch`) as what to change.
    """
    path = Path(path)
    checkpoint = _load_checkpoint(path)
    classifier, normaliser = _split_robustness_keys(_state_dict(checkpoint, path), path)
    if {"new_mean", "new_std"} <= normaliser.keys():
        arch = dataclasses.replace(
            arch, mean=_float32_tuple(normaliser["new_mean"]), std=_float32_tuple(normaliser["new_std"])
        )
        normaliser_source = "checkpoint"
    else:
        normaliser_source = "architecture"
    network = build_network(arch)
    reference = network.state_dict()
    inner = {k[len("model.") :]: v for k, v in reference.items() if k.startswith("model.")}
    if len(inner) + sum(k.startswith("normalize.") for k in reference) != len(reference):
        raise ValueError(
            f"architecture {arch.name!r} does not keep its layers under 'model.'; use one of "
            f"{', '.join(CHECKPOINT_ARCHITECTURES)}"
        )
    _check_architecture(classifier, inner, arch, path, setting)
    for key, expected in inner.items():
        if key.endswith("num_batches_tracked") and key not in classifier:
            classifier[key] = torch.zeros_like(expected)
    state = {f"model.{k}": v.to(reference[f"model.{k}"].dtype) for k, v in classifier.items()}
    state.update({k: v for k, v in reference.items() if k.startswith("normalize.")})
    network.load_state_dict(state, strict=True)
    epoch = checkpoint.get("epoch")
    return weights_to_dataset(
        network,
        arch,
        {
            "source_checkpoint": path.name,
            "source_epoch": int(epoch) if isinstance(epoch, int) else -1,
            "normaliser_source": normaliser_source,
            **(attrs or {}),
        },
    )


def weights_from_checkpoint(path: str | os.PathLike[str], name: str, settings: Mapping[str, Any]) -> xr.Dataset:
    """Weights of the downloaded network `networks.<name>` of the config from its checkpoint.

    settings: its `eps` (training budget, pixels in [0, 1]), `norm` (l2 or linf,
    default l2) and `architecture` (default resnet50). The weights' attrs record
    `training_eps` and `training_norm`; a checkpoint of another architecture is
    refused with the key to change, `networks.<name>.architecture`.
    """
    architecture = str(settings.get("architecture", DEFAULT_CHECKPOINT_ARCHITECTURE))
    norm = str(settings.get("norm", DEFAULT_NORM))
    if norm not in NORMS:
        raise ValueError(f"networks.{name}.norm = {norm!r}: use one of {', '.join(NORMS)}")
    return robust_checkpoint_to_weights(
        path,
        robust_architecture(architecture),
        attrs={"training_eps": float(settings["eps"]), "training_norm": norm},
        setting=f"networks.{name}.architecture",
    )
