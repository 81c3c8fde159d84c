"""The attacks of the surrogate screening's transfer tests: a candidate's site models attacked
on clean images, a candidate's whole layer pushed away from each clean image (no mapping to the
sites), and, in silico only, the simulated sites attacked directly for reference."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import AttackSettings, attack_grid
from neuroattack.attacks.untargeted import attack_targets, white_box_changes
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS
from neuroattack.networks.build import FeatureNetwork
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.readouts import LinearSiteResponse, infer, to_tensor

log = logging.getLogger(__name__)


class RepresentationChange(nn.Module):
    """Squared distance of a layer's whole representation from that of clean image `target`,
    in units of the layer's total variance over the stimuli (0 at the clean image)."""

    clean: Tensor

    def __init__(self, network: FeatureNetwork, clean: np.ndarray, total_variance: float) -> None:
        super().__init__()
        self.network = frozen_for_attack(network)
        self.register_buffer("clean", torch.as_tensor(np.asarray(clean, dtype=np.float32)))
        self.scale = 1.0 / max(total_variance, 1e-12)

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        return ((self.network.features(images) - self.clean[target]) ** 2).sum(dim=1) * self.scale


def representation_attack(
    network: FeatureNetwork,
    pixels: np.ndarray,
    total_variance: float,
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Perturbations of norm <= eps that move the whole layer as far as possible from each
    clean image (uint8 images, like the input) and the change achieved (in total variances)."""
    images = to_tensor(pixels).to(device)
    frozen = frozen_for_attack(network).to(device)
    clean = infer(frozen.features, pixels, device)
    response = RepresentationChange(network, clean, total_variance).to(device)
    grid = attack_grid(images, torch.arange(len(images), device=device), [eps], (1.0,))
    result = pgd_attack(response, grid.images, grid.target, grid.eps, grid.sign, settings, seed)
    perturbed = result.perturbed.permute(0, 2, 3, 1).cpu().numpy()
    return perturbed, result.change.float().cpu().numpy()


def layer_perturbations(
    name: str,
    network: FeatureNetwork,
    features: np.ndarray,
    clean_pixels: np.ndarray,
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """`representation_attack` on network `name`, its layer's total variance taken over
    `features` (stimulus, unit): the perturbed images (image, y, x, channel)."""
    total_variance = float(features.var(axis=0, ddof=1).sum())
    perturbed, change = representation_attack(network, clean_pixels, total_variance, eps, settings, seed, device)
    log.info("transfer: %s's layer moved by %.3f total variances (mean over images)", name, float(change.mean()))
    return perturbed


def site_model_attack(
    name: str,
    model: LinearSiteResponse,
    stimuli: xr.Dataset,
    image_ids: Sequence[str],
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Every site of network `name`'s site models attacked on every image at `eps`, both directions:
    `perturbed` uint8 (image, site, direction, y, x, channel) and `predicted` change (image, site, direction)."""
    sites = np.arange(model.weight.shape[0])
    parts = [
        attack_targets(
            model, to_tensor(stimuli["pixels"].sel(stimulus_id=[sid]).values).to(device), sites, [eps], settings, seed
        )
        for sid in image_ids
    ]
    log.info("transfer: attacked %d sites of %s on %d images", len(sites), name, len(image_ids))
    return {
        "perturbed": np.stack([p["perturbed"][:, 0] for p in parts]),
        "predicted": np.stack([p["change"][:, 0] for p in parts]),
    }


def brain_own_change(
    brain: xr.Dataset,
    neuroids: np.ndarray,
    stimuli: xr.Dataset,
    image_ids: Sequence[str],
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> float:
    """In silico only (reads the brain's weights, as the white-box validation does): the mean
    change in the sought direction that attacking the simulated sites directly achieves, in s.d."""
    direct = white_box_changes(brain, stimuli, image_ids, settings, [eps], seed, device)
    columns = [list(brain["neuroid_id"].values.astype(str)).index(str(n)) for n in neuroids]
    signs = xr.DataArray(list(DIRECTION_SIGNS), dims="direction", coords={"direction": list(DIRECTIONS)})
    change = (direct["change"] * signs / direct["sigma"]).isel(site=columns)
    return float(change.mean())
