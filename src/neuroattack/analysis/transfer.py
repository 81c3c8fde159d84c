"""Transfer, the screening's third criterion and its matrix: perturbations made on one network
shown to the others and to the brain.

- without a mapping: perturbations that maximise the change of a candidate's whole layer are
  shown to the brain; the noise-corrected population change they cause (`transfer`);
- the transfer matrix: every candidate's site-model perturbations evaluated on every other
  candidate's site models and on the brain, relative to what the target's own attack achieves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.analysis.sensitivity import interval, site_sigma
from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import AttackSettings, attack_grid
from neuroattack.attacks.untargeted import attack_targets, attacked_stimuli, white_box_changes
from neuroattack.brain.simulated import record
from neuroattack.brain.sitemodels import surrogate_response
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS
from neuroattack.data.recordings import repetition_tensor
from neuroattack.data.stimuli import make_stimuli
from neuroattack.networks.build import FeatureNetwork
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.readouts import LinearSiteResponse, infer, to_tensor

log = logging.getLogger(__name__)

BRAIN = "brain"  # the transfer matrix's column of recorded responses


# --- transfer without a mapping -----------------------------------------------------------


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


def noise_corrected_change(clean: np.ndarray, perturbed: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per image, the mean over sites of the squared response change in units of the site's
    s.d., without the noise's bias: the repetitions (image, repetition, site) of each image are
    split in two halves and the halves' changes multiplied (their noise is independent)."""
    count = min(clean.shape[1], perturbed.shape[1])
    first, second = slice(0, count // 2), slice(count // 2, count)

    def change(part: slice) -> np.ndarray:
        difference: np.ndarray = np.nanmean(perturbed[:, part], axis=1) - np.nanmean(clean[:, part], axis=1)
        return difference

    product: np.ndarray = np.nanmean(change(first) * change(second) / np.square(sigma), axis=1)
    return product


def population_change(per_image: np.ndarray, draws: int, seed: int) -> tuple[float, float, float]:
    """sqrt of the mean over images (the r.m.s. change per site, in s.d.; 0 below the noise)
    and its bootstrap interval over images."""
    rng = np.random.default_rng(seed)
    samples = np.array([per_image[rows].mean() for rows in rng.integers(len(per_image), size=(draws, len(per_image)))])
    low, high = interval(samples)
    return tuple(float(np.sqrt(max(value, 0.0))) for value in (per_image.mean(), low, high))  # type: ignore[return-value]


@dataclass(frozen=True)
class Candidate:
    """What the screening knows of one network."""

    name: str
    network: FeatureNetwork
    weights: xr.Dataset
    features: np.ndarray  # (stimulus, unit), stimuli in the recordings' order
    site_models: xr.Dataset


def site_model_attacks(
    candidates: Sequence[Candidate],
    stimuli: xr.Dataset,
    image_ids: Sequence[str],
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> dict[str, dict[str, np.ndarray]]:
    """Per attacker: its site models attacked on every image at `eps`, both directions:
    `perturbed` uint8 (image, site, direction, y, x, channel) and `predicted` change (image, site, direction)."""
    attacks: dict[str, dict[str, np.ndarray]] = {}
    for candidate in candidates:
        model = surrogate_response(candidate.weights, candidate.site_models, candidate.name)
        sites = np.arange(candidate.site_models.sizes["site"])
        parts = [
            attack_targets(
                model,
                to_tensor(stimuli["pixels"].sel(stimulus_id=[sid]).values).to(device),
                sites,
                [eps],
                settings,
                seed,
            )
            for sid in image_ids
        ]
        attacks[candidate.name] = {
            "perturbed": np.stack([p["perturbed"][:, 0] for p in parts]),
            "predicted": np.stack([p["change"][:, 0] for p in parts]),
        }
        log.info("transfer: attacked %d sites of %s on %d images", len(sites), candidate.name, len(image_ids))
    return attacks


def own_site_response(model: LinearSiteResponse, pixels: np.ndarray, device: torch.device) -> np.ndarray:
    """Response of each perturbed image's own site: pixels (image, site, direction, y, x, channel)
    -> (image, site, direction)."""
    images, sites, directions = pixels.shape[:3]
    every = infer(model.to(device).all_sites, pixels.reshape(-1, *pixels.shape[3:]), device)
    return own_site(every.reshape(images, sites, directions, -1))


def own_site(values: np.ndarray) -> np.ndarray:
    """(image, site, direction, every site) -> (image, site, direction): each perturbed image's
    response at the site it was made for."""
    diagonal: np.ndarray = np.einsum("isds->isd", values)
    return diagonal


def transfer_matrix(
    candidates: Sequence[Candidate],
    attacks: Mapping[str, Mapping[str, np.ndarray]],
    clean_pixels: np.ndarray,
    sigma: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """(attacker, target) mean change achieved in the sought direction, in units of each site's
    s.d., over images, sites and both directions: the attacker's perturbations on the target's
    site models."""
    sign = np.asarray(DIRECTION_SIGNS)[None, None, :]
    matrix = np.empty((len(candidates), len(candidates)))
    for column, target in enumerate(candidates):
        model = surrogate_response(target.weights, target.site_models, target.name)
        clean = infer(model.to(device).all_sites, clean_pixels, device)  # (image, site)
        for row, attacker in enumerate(candidates):
            shown = own_site_response(model, attacks[attacker.name]["perturbed"], device)
            matrix[row, column] = np.mean(sign * (shown - clean[:, :, None]) / sigma[None, :, None])
    return matrix


def brain_session(
    brain: xr.Dataset,
    neuroids: np.ndarray,
    clean_pixels: np.ndarray,
    shown: Mapping[str, np.ndarray],
    repetitions: int,
    seed: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Record the clean images and every group of perturbed images (uint8, (..., y, x, channel))
    in one session: (image, repetition, site) for the clean ones, (..., repetition, site) per
    group; sites in the order of `neuroids`."""
    groups = {name: pixels.reshape(-1, *pixels.shape[-3:]) for name, pixels in shown.items()}
    pixels = np.concatenate([clean_pixels, *groups.values()])
    ids = [f"shown{i:06d}" for i in range(len(pixels))]
    recordings = record(brain, pixels, ids, repetitions, seed)
    tensor, order = repetition_tensor(recordings)
    position = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    tensor = tensor[np.argsort([int(sid.removeprefix("shown")) for sid in order])][
        :, :, [position[str(n)] for n in neuroids]
    ]
    start, recorded = len(clean_pixels), {}
    for name, group in groups.items():
        recorded[name] = tensor[start : start + len(group)].reshape(*shown[name].shape[:-3], *tensor.shape[1:])
        start += len(group)
    return tensor[: len(clean_pixels)], recorded


def transfer_scores(
    candidates: Sequence[Candidate],
    stimuli: xr.Dataset,
    recordings: xr.Dataset,
    neuroids: np.ndarray,
    screening: Mapping[str, Any],
    attack: AttackSettings,
    seed: int,
    brain: xr.Dataset | None,
    repetitions: int,
    recording_seed: int,
    device: torch.device,
) -> xr.Dataset:
    """`transfer` (candidate) with its interval, and the (attacker, target) transfer matrix."""
    eps = float(screening["eps"])
    draws = int(screening["bootstrap"])
    settings = attack
    image_ids = attacked_stimuli(stimuli, int(screening["images"]), seed)
    clean_pixels = stimuli["pixels"].sel(stimulus_id=image_ids).values
    sigma = site_sigma(recordings, neuroids).values
    attacks = site_model_attacks(candidates, stimuli, image_ids, eps, settings, seed, device)
    names = [c.name for c in candidates]
    targets = [*names, BRAIN]
    matrix = np.full((len(names), len(targets)), np.nan)
    matrix[:, : len(names)] = transfer_matrix(candidates, attacks, clean_pixels, sigma, device)
    own = np.append(np.diag(matrix), np.nan)
    transfer = np.full((len(names), 3), np.nan)
    layer = np.stack([layer_perturbations(c, clean_pixels, eps, settings, seed, device) for c in candidates])
    if brain is not None:
        shown = {f"layer {name}": layer[row] for row, name in enumerate(names)}
        shown.update({f"sites {name}": attacks[name]["perturbed"] for name in names})
        clean, recorded = brain_session(brain, neuroids, clean_pixels, shown, repetitions, recording_seed)
        for row, candidate in enumerate(candidates):
            per_image = noise_corrected_change(clean, recorded[f"layer {candidate.name}"], sigma)
            transfer[row] = population_change(per_image, draws, seed)
            # site-model perturbations: each image counts for its own site, in the attacker's predicted sign
            perturbed = np.nanmean(recorded[f"sites {candidate.name}"], axis=3)  # (image, site, direction, site)
            change = own_site(perturbed) - np.nanmean(clean, axis=1)[:, :, None]
            predicted_sign = np.sign(attacks[candidate.name]["predicted"])
            matrix[row, -1] = np.mean(predicted_sign * change / sigma[None, :, None])
        own[-1] = brain_own_change(brain, neuroids, stimuli, image_ids, eps, settings, seed, device)
    return xr.Dataset(
        {
            "transfer": ("candidate", transfer[:, 0]),
            "transfer_low": ("candidate", transfer[:, 1]),
            "transfer_high": ("candidate", transfer[:, 2]),
            "transfer_change": (("attacker", "target"), matrix),
            "own_change": ("target", own),
            "transfer_relative": (("attacker", "target"), matrix / own[None, :]),
            "layer_perturbed": (("candidate", "image", "y", "x", "channel"), layer),
        },
        coords={"attacker": names, "target": targets, "image": list(image_ids)},
    )


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


def layer_perturbations(
    candidate: Candidate,
    clean_pixels: np.ndarray,
    eps: float,
    settings: AttackSettings,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    total_variance = float(candidate.features.var(axis=0, ddof=1).sum())
    perturbed, change = representation_attack(
        candidate.network, clean_pixels, total_variance, eps, settings, seed, device
    )
    log.info(
        "transfer: %s's layer moved by %.3f total variances (mean over images)", candidate.name, float(change.mean())
    )
    return perturbed


def layer_stimulus_set(screening: xr.Dataset, stimuli: xr.Dataset) -> xr.Dataset:
    """The transfer test's images for a recording rig (real recordings): the clean images, then
    each candidate's layer perturbations, with coords `clean_stimulus_id`, `network` and `eps`."""
    clean_ids = [str(i) for i in screening["image"].values]
    perturbed = screening["layer_perturbed"].transpose("candidate", "image", "y", "x", "channel")
    names = [str(c) for c in screening["candidate"].values]
    eps = float(screening.attrs["transfer_eps"])
    ids = clean_ids + [f"{sid}__layer_{name}__eps{eps:g}" for name in names for sid in clean_ids]
    pixels = np.concatenate(
        [stimuli["pixels"].sel(stimulus_id=clean_ids).values, perturbed.values.reshape(-1, *perturbed.shape[2:])]
    )
    shown = make_stimuli(pixels, ids, ["clean"] * len(clean_ids) + ["perturbed"] * (len(ids) - len(clean_ids)))
    return shown.assign_coords(
        clean_stimulus_id=("stimulus_id", clean_ids * (1 + len(names))),
        network=("stimulus_id", [""] * len(clean_ids) + [name for name in names for _ in clean_ids]),
        eps=("stimulus_id", [0.0] * len(clean_ids) + [eps] * (len(ids) - len(clean_ids))),
    )
