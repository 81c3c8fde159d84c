"""Standard and PGD-L2 adversarial training of classification networks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from neuroattack.attack import clamp_to_box, normalized, project_l2, random_in_ball
from neuroattack.models import Architecture, FeatureNetwork, build_network
from neuroattack.readouts import to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    attack_steps: int = 3  # PGD steps per adversarial example (training)
    eval_attack_steps: int = 10


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
    for start in range(0, len(pixels), 256):
        images = to_tensor(pixels[start : start + 256]).to(device)
        target = torch.from_numpy(labels[start : start + 256]).long().to(device)
        if eps > 0:
            images = pgd_l2_classification(network, images, target, eps, steps, generator)
        with torch.no_grad():
            correct += int((network(images).argmax(1) == target).sum())
    return correct / max(len(pixels), 1)


def train_network(
    arch: Architecture,
    train: tuple[np.ndarray, np.ndarray],
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
    for epoch in range(settings.epochs):
        order = torch.randperm(len(pixels), generator=shuffle).numpy()
        total_loss = 0.0
        for start in range(0, len(pixels), settings.batch_size):
            index = order[start : start + settings.batch_size]
            images = to_tensor(pixels[index]).to(device)
            target = torch.from_numpy(labels[index]).long().to(device)
            if eps > 0:
                network.eval()
                images = pgd_l2_classification(network, images, target, eps, settings.attack_steps, generator)
            network.train()
            loss = functional.cross_entropy(network(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
        log.info("epoch %d/%d: loss %.3f", epoch + 1, settings.epochs, total_loss / len(pixels))
    network.eval().requires_grad_(False)
    return network
