"""Fine-tuning a surrogate network on recorded responses (`loop.refit: network`).

Between loop rounds the surrogate's own weights are refined to predict every site's trial-mean
response to every image recorded so far, through a linear readout trained with them: the
recordings of perturbed images are exactly the data that says where the surrogate's
perturbations fail to move the brain. Three things keep it from fitting the noise of a few
thousand images: an L2-SP penalty (Li et al. 2018) that pulls the weights towards where they
started, early stopping on held-out clean images (with every perturbed image of them), and
BatchNorm statistics kept frozen (the network stays in eval mode). The held-out error never
ends above where it started: the weights of the best held-out epoch are kept, epoch 0 included.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from neuroattack.networks.readouts import infer, to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    """How a surrogate is fine-tuned. `from_layer`: the first module (a name, as in
    `networks.<name>.layer`) whose parameters train; None trains every parameter."""

    epochs: int = 20  # at most; early stopping ends it sooner
    patience: int = 4  # epochs without a better held-out error before stopping
    learning_rate: float = 1e-3  # Adam, for the network and the readout alike
    anchor: float = 1.0  # L2-SP: weight of the squared distance to the starting weights (per weight, summed)
    batch_size: int = 64
    held_out: float = 0.2  # fraction of the clean images (with their perturbed images) held out
    from_layer: str | None = None
    change_weight: float = 0.0  # weight of the error on each recorded image's change from its clean image

    def __post_init__(self) -> None:
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out {self.held_out}: use a fraction in (0, 1)")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("epochs, patience and batch_size must be positive")
        if self.learning_rate <= 0 or self.anchor < 0 or self.change_weight < 0:
            raise ValueError("learning_rate must be positive, anchor and change_weight at least 0")


@dataclass(frozen=True)
class FinetuneResult:
    state: dict[str, Tensor]  # the fine-tuned network's state_dict
    held_out_error: list[float]  # per epoch (0: before any step), mean squared error in site s.d.
    best_epoch: int
    trained_parameters: int


# the surrogate's features of a network: network -> (images -> features), e.g. its view at a layer
FeaturesView = Callable[[nn.Module], Callable[[Tensor], Tensor]]


def held_out_groups(groups: Sequence[str] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over images: the images of a seeded `fraction` of the groups (clean images)."""
    names = np.unique(np.asarray(groups, dtype=str))
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    if count < 1:
        raise ValueError("fine-tuning needs at least two clean images to hold one out")
    chosen = np.random.default_rng(seed).choice(names, size=count, replace=False)
    mask: np.ndarray = np.isin(np.asarray(groups, dtype=str), chosen)
    return mask


def trainable_parameters(network: nn.Module, from_layer: str | None) -> list[tuple[str, nn.Parameter]]:
    """The parameters that train: all of them, or those of `from_layer` and every module
    registered after it (the order of `named_parameters`, which follows the forward pass in
    the networks the workflow builds and in torchvision's and timm's)."""
    named = list(network.named_parameters())
    if from_layer is None:
        return named
    prefix = from_layer + "."
    starts = [i for i, (name, _) in enumerate(named) if name.startswith(prefix)]
    if not starts:
        modules = [
            name
            for name, module in network.named_modules()
            if name and next(module.parameters(recurse=False), None) is not None
        ]
        raise ValueError(f"no parameters under module {from_layer!r}; modules with parameters: {modules[:12]} ...")
    return named[starts[0] :]


def _ridge_readout(features: np.ndarray, targets: np.ndarray, alpha: float) -> nn.Linear:
    """The readout's start: a ridge fit of the standardised targets on the features."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    z = (features - mean) / scale
    gram = z.T @ z + alpha * len(z) * np.eye(z.shape[1])
    weight_z = np.linalg.solve(gram, z.T @ (targets - targets.mean(axis=0)))
    readout = nn.Linear(features.shape[1], targets.shape[1])
    with torch.no_grad():
        readout.weight.copy_(torch.as_tensor((weight_z / scale[:, None]).T, dtype=torch.float32))
        readout.bias.copy_(torch.as_tensor(targets.mean(axis=0) - (mean / scale) @ weight_z, dtype=torch.float32))
    return readout


def finetune(
    network: nn.Module,
    view: FeaturesView,
    pixels: np.ndarray,
    responses: np.ndarray,
    held_out: np.ndarray,
    settings: FinetuneSettings,
    seed: int,
    device: torch.device | None = None,
    partner: np.ndarray | None = None,
) -> FinetuneResult:
    """Fine-tune `network` (whose `view(network)(images)` are the surrogate's features) with a
    linear readout to predict `responses` (image, site) of `pixels` (uint8 image, y, x, channel).
    `held_out` masks the images that decide early stopping; the rest train. Sites are
    standardised on the training images, so the error is in site s.d. units. With
    `settings.change_weight`, `partner` (per image, the index of the clean image it was made
    from; its own for a clean image) adds the error on each image's change from its partner, the
    quantity an attack must get right. Deterministic for a seed on one device."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    network = copy.deepcopy(network).to(device).eval()
    network.requires_grad_(False)
    features_of = view(network)
    trained = trainable_parameters(network, settings.from_layer)
    for _, parameter in trained:
        parameter.requires_grad_(True)
    anchors = [parameter.detach().clone() for _, parameter in trained]
    train = ~held_out
    mean, scale = responses[train].mean(axis=0), responses[train].std(axis=0) + 1e-6
    targets = torch.as_tensor((responses - mean) / scale, dtype=torch.float32)
    start_features = infer(features_of, pixels[train], device)
    readout = _ridge_readout(start_features.astype(np.float64), targets[train].numpy().astype(np.float64), 1.0)
    readout = readout.to(device)
    optimizer = torch.optim.Adam([p for _, p in trained] + list(readout.parameters()), lr=settings.learning_rate)
    # a linear warm-up over the first epoch: the ridge readout starts at its optimum, and
    # Adam's first full-size steps on a network it fits would throw it off before it adapts
    warmup = max(1, -(-int((~held_out).sum()) // settings.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    images = to_tensor(
        pixels
    ).contiguous()  # a channels-last batch corrupted the heap in a CPU conv weight backward (torch 2.14, 2 threads)
    train_index, test_index = np.flatnonzero(train), np.flatnonzero(held_out)
    generator = torch.Generator().manual_seed(seed)

    partner = np.arange(len(pixels)) if partner is None else np.asarray(partner)

    def error(batch: np.ndarray) -> Tensor:
        """Per image of `batch`: the squared error of its response, plus change_weight x that
        of its change from its partner (made images only)."""
        prediction = readout(features_of(images[batch].to(device)))
        squared: Tensor = ((prediction - targets[batch].to(device)) ** 2).mean(dim=1)
        made = np.flatnonzero(partner[batch] != batch)
        if settings.change_weight and len(made):
            clean = partner[batch[made]]
            predicted_change = prediction[made] - readout(features_of(images[clean].to(device)))
            recorded_change = (targets[batch[made]] - targets[clean]).to(device)
            change_error = ((predicted_change - recorded_change) ** 2).mean(dim=1)
            squared = squared.index_add(0, torch.as_tensor(made, device=device), settings.change_weight * change_error)
        return squared

    def held_out_error() -> float:
        with torch.no_grad():
            errors = [
                error(batch).cpu()
                for batch in np.array_split(test_index, max(1, len(test_index) // settings.batch_size))
            ]
        return float(torch.cat(errors).mean())

    history = [held_out_error()]
    best_state, best_epoch = copy.deepcopy(network.state_dict()), 0
    for epoch in range(1, settings.epochs + 1):
        order = train_index[torch.randperm(len(train_index), generator=generator).numpy()]
        for first in range(0, len(order), settings.batch_size):
            batch = order[first : first + settings.batch_size]
            loss = error(batch).mean()
            if settings.anchor:
                loss = loss + settings.anchor * sum(
                    ((p - a) ** 2).sum() for (_, p), a in zip(trained, anchors, strict=True)
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        history.append(held_out_error())
        log.info("fine-tuning epoch %d: held-out error %.4f (start %.4f)", epoch, history[-1], history[0])
        if history[-1] < history[best_epoch]:
            best_state, best_epoch = copy.deepcopy(network.state_dict()), epoch
        elif epoch - best_epoch >= settings.patience:
            break
    state = {name: tensor.detach().cpu() for name, tensor in best_state.items()}
    return FinetuneResult(state, history, best_epoch, sum(p.numel() for _, p in trained))
