"""Standard and PGD-L2 adversarial training of classification networks."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional

from neuroattack.data.stimuli import CATEGORIES, crops, image_folder_to_stimuli
from neuroattack.geometry import clamp_to_box, normalized, project_l2, random_in_ball
from neuroattack.networks.build import FeatureNetwork, build_network, weights_to_dataset
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import image_batches, to_tensor
from neuroattack.runtime import bf16_is_native

log = logging.getLogger(__name__)


Labelled = tuple[np.ndarray, np.ndarray]  # uint8 images (n, H, W, C), integer labels (n,)
TRAINING_PRECISIONS = ("auto", "float32", "bf16")


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    attack_steps: int = 3  # PGD steps per adversarial example (training)
    eval_attack_steps: int = 10
    precision: str = "float32"  # one of TRAINING_PRECISIONS (see bf16)

    def __post_init__(self) -> None:
        if self.precision not in TRAINING_PRECISIONS:
            raise ValueError(f"training.precision is {self.precision!r}; use one of {', '.join(TRAINING_PRECISIONS)}")

    def bf16(self, device: torch.device) -> bool:
        """Whether training runs under bf16 autocast on `device`: the adversarial examples'
        search and each step's forward and backward passes. The weights, the optimizer's
        state, BatchNorm's statistics and the held-out accuracies stay float32."""
        return self.precision == "bf16" or (self.precision == "auto" and bf16_is_native(device))


def pgd_l2_classification(
    network: nn.Module, images: Tensor, labels: Tensor, eps: float, steps: int, generator: torch.Generator
) -> Tensor:
    """Adversarial images maximising cross-entropy within an L2 ball (Madry et al.)."""
    radius = torch.full((images.shape[0],), eps, device=images.device)
    step = 2.5 * eps / steps
    delta = clamp_to_box(images, random_in_ball(images.shape, radius, generator))
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = functional.cross_entropy(network(images + delta), labels)
        (gradient,) = torch.autograd.grad(loss, delta)
        delta = clamp_to_box(images, project_l2(delta.detach() + step * normalized(gradient), radius))
    return (images + delta).detach()


def accuracy(
    network: FeatureNetwork, pixels: np.ndarray, labels: np.ndarray, eps: float, steps: int, seed: int
) -> float:
    """Top-1 accuracy, on PGD-L2 adversarial images when eps > 0."""
    network.eval()
    device = next(network.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    correct = 0
    for rows, images in image_batches(pixels, device):
        target = torch.from_numpy(labels[rows]).long().to(device)
        if eps > 0:
            images = pgd_l2_classification(network, images, target, eps, steps, generator)
        with torch.no_grad():
            correct += int((network(images).argmax(1) == target).sum())
    return correct / max(len(pixels), 1)


def train_network(
    arch: Architecture,
    train: Labelled,
    eps: float,
    settings: TrainingSettings,
    seed: int,
    device: torch.device | None = None,
) -> FeatureNetwork:
    """Train from scratch with SGD + one-cycle schedule; adversarially (PGD-L2) when eps > 0."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    network = build_network(arch).to(device)
    pixels, labels = train
    optimizer = torch.optim.SGD(
        network.parameters(), lr=settings.learning_rate, momentum=0.9, weight_decay=settings.weight_decay, nesterov=True
    )
    batches_per_epoch = int(np.ceil(len(pixels) / settings.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=settings.epochs * batches_per_epoch
    )
    bf16 = settings.bf16(device)
    for epoch in range(settings.epochs):
        order = torch.randperm(len(pixels), generator=shuffle).numpy()
        total_loss = 0.0
        for start in range(0, len(pixels), settings.batch_size):
            index = order[start : start + settings.batch_size]
            images = to_tensor(pixels[index]).to(device)
            target = torch.from_numpy(labels[index]).long().to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if eps > 0:
                    network.eval()
                    images = pgd_l2_classification(network, images, target, eps, settings.attack_steps, generator)
                network.train()
                logits = network(images)
            loss = functional.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
        log.info("epoch %d/%d: loss %.3f", epoch + 1, settings.epochs, total_loss / len(pixels))
    network.eval().requires_grad_(False)
    return network


def training_set(
    data: Mapping[str, Any], folder: str | os.PathLike[str] | None = None
) -> tuple[Labelled, Labelled, list[str]]:
    """(train, test, category names): embedded crops that never overlap the stimuli, or a
    user's image folder (one subfolder per category) split at random by `test_fraction`."""
    if data.get("source", "embedded") == "embedded":
        train = crops("train", data["train_per_category"], data["resolution"], data["seed"])
        test = crops("test", data["test_per_category"], data["resolution"], data["seed"])
        return train, test, list(CATEGORIES)
    if folder is None:
        raise ValueError("training_data.source 'folder' needs training_data.path")
    images = image_folder_to_stimuli(folder, data["resolution"])
    categories = sorted(set(images["category"].values.tolist()))
    labels = np.searchsorted(categories, images["category"].values)
    order = np.random.default_rng(data["seed"]).permutation(len(labels))
    n_test = max(1, round(data.get("test_fraction", 0.1) * len(labels)))
    pixels = images["pixels"].values
    test_rows, train_rows = order[:n_test], order[n_test:]
    return (pixels[train_rows], labels[train_rows]), (pixels[test_rows], labels[test_rows]), categories


def train_classifier(
    arch: Architecture,
    eps: float,
    seed: int,
    data: tuple[Labelled, Labelled, list[str]],
    settings: TrainingSettings,
    eval_eps: float,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Train one network (adversarially when eps > 0); its weights, with held-out clean
    and robust accuracy in the attrs."""
    train, test, categories = data
    network = train_network(arch, train, eps, settings, seed, device)
    clean = accuracy(network, *test, eps=0.0, steps=0, seed=seed)
    robust = accuracy(network, *test, eps=eval_eps, steps=settings.eval_attack_steps, seed=seed)
    return weights_to_dataset(
        network.cpu(),
        arch,
        {
            "training_eps": eps,
            "seed": seed,
            "clean_accuracy": clean,
            "robust_accuracy": robust,
            "robust_accuracy_eps": eval_eps,
            "training_precision": "bf16" if settings.bf16(device or torch.device("cpu")) else "float32",
            "categories": categories,
        },
    )


def labelled_dataset(data: tuple[Labelled, Labelled, list[str]]) -> xr.Dataset:
    """The networks' training data as one file, made once for every network it trains: `pixels`
    (image, y, x, channel) uint8, `label` (an index into `category_name`) and `split` ("train"
    or "test") per image."""
    (train_pixels, train_labels), (test_pixels, test_labels), categories = data
    return xr.Dataset(
        {
            "pixels": (("image", "y", "x", "channel"), np.concatenate([train_pixels, test_pixels])),
            "label": ("image", np.concatenate([train_labels, test_labels]).astype(np.int64)),
            "split": ("image", np.array(["train"] * len(train_labels) + ["test"] * len(test_labels))),
            "category_name": ("category", np.array([str(name) for name in categories])),
        },
    )


def labelled_from_dataset(dataset: xr.Dataset) -> tuple[Labelled, Labelled, list[str]]:
    """(train, test, category names) of a `labelled_dataset`."""
    pixels, labels = dataset["pixels"].values, dataset["label"].values
    split = dataset["split"].values.astype(str)
    train, test = split == "train", split == "test"
    categories = [str(name) for name in dataset["category_name"].values]
    return (pixels[train], labels[train]), (pixels[test], labels[test]), categories


def train_from_config(
    spec: Mapping[str, Any],
    training: Mapping[str, Any],
    data: tuple[Labelled, Labelled, list[str]],
    device: torch.device | None = None,
) -> xr.Dataset:
    """One network of the config: `spec` (eps, seed, widths, blocks), the `training` section,
    and its training data (`training_set`)."""
    arch = Architecture(widths=tuple(spec["widths"]), blocks=tuple(spec["blocks"]), num_classes=len(data[2]))
    settings = TrainingSettings(**{key: value for key, value in training.items() if key != "robust_eval_eps"})
    return train_classifier(arch, spec["eps"], spec["seed"], data, settings, training["robust_eval_eps"], device)
