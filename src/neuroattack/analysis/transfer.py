"""Transfer, the screening's third criterion and its matrix: perturbations made on one network
shown to the others and to the brain.

- without a mapping: perturbations that maximise the change of a candidate's whole layer are
  shown to the brain; the noise-corrected population change they cause (per image here; the
  `transfer` criterion summarises it);
- the transfer matrix: every candidate's site-model perturbations evaluated on every other
  candidate's site models and on the brain, relative to what the target's own attack achieves.

The attacks are in `attacks.transfer`, the brain's recording session in `brain.session`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from neuroattack.analysis.sensitivity import interval, noise_corrected_squared_change, site_sigma
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.transfer import brain_own_change, layer_perturbations, site_model_attack
from neuroattack.attacks.untargeted import attacked_stimuli
from neuroattack.brain.session import brain_session
from neuroattack.brain.sitemodels import surrogate_response
from neuroattack.config import DIRECTION_SIGNS
from neuroattack.data.stimuli import make_stimuli
from neuroattack.networks.build import FeatureNetwork
from neuroattack.networks.readouts import LinearSiteResponse, infer

BRAIN_TARGET = "brain"  # the transfer matrix's column of recorded responses


@dataclass(frozen=True)
class TransferSettings:
    """The transfer tests: `images` clean images (the first of attack.images), budget `eps`; the
    simulated brain's session shows every image `repetitions` times, its noise drawn by `recording_seed`."""

    images: int
    eps: float
    repetitions: int = 0
    recording_seed: int = 0


def noise_corrected_change(clean: np.ndarray, perturbed: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per image, the mean over sites of the squared response change in units of the site's
    s.d., without the noise's bias: `noise_corrected_squared_change` of the trial means and
    variances of the repetitions (image, repetition, site) of each image."""

    def trial_statistics(trials: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid = np.isfinite(trials)
        return np.nanmean(trials, axis=1), np.nanvar(trials, axis=1, ddof=1), valid.sum(axis=1)

    squared = noise_corrected_squared_change(*trial_statistics(perturbed), *trial_statistics(clean))
    per_image: np.ndarray = np.nanmean(squared / np.square(sigma), axis=1)
    return per_image


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


@dataclass(frozen=True)
class TransferTest:
    """What the transfer tests measured: per candidate, the noise-corrected change per image that
    its layer perturbations caused in the brain (none without a simulated brain), and the
    transfer matrix's dataset."""

    changes: Mapping[str, np.ndarray]
    matrix: xr.Dataset


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


def transfer_test(
    candidates: Sequence[Candidate],
    stimuli: xr.Dataset,
    recordings: xr.Dataset,
    neuroids: np.ndarray,
    settings: TransferSettings,
    attack: AttackSettings,
    seed: int,
    brain: xr.Dataset | None,
    device: torch.device,
) -> TransferTest:
    """Every candidate's site models and layer attacked on the same clean images, the site-model
    perturbations shown to every candidate's site models and, with a simulated `brain`, the
    layer and site-model perturbations recorded in one session."""
    image_ids = attacked_stimuli(stimuli, settings.images, seed)
    clean_pixels = stimuli["pixels"].sel(stimulus_id=image_ids).values
    sigma = site_sigma(recordings, neuroids).values
    attacks = {
        c.name: site_model_attack(
            c.name,
            surrogate_response(c.weights, c.site_models, c.name),
            stimuli,
            image_ids,
            settings.eps,
            attack,
            seed,
            device,
        )
        for c in candidates
    }
    names = [c.name for c in candidates]
    matrix = np.full((len(names), len(names) + 1), np.nan)
    matrix[:, : len(names)] = transfer_matrix(candidates, attacks, clean_pixels, sigma, device)
    own = np.append(np.diag(matrix), np.nan)
    layer = np.stack(
        [
            layer_perturbations(c.name, c.network, c.features, clean_pixels, settings.eps, attack, seed, device)
            for c in candidates
        ]
    )
    changes: dict[str, np.ndarray] = {}
    if brain is not None:
        shown = {f"layer {name}": layer[row] for row, name in enumerate(names)}
        shown.update({f"sites {name}": attacks[name]["perturbed"] for name in names})
        clean, recorded = brain_session(
            brain, neuroids, clean_pixels, shown, settings.repetitions, settings.recording_seed
        )
        for row, name in enumerate(names):
            changes[name] = noise_corrected_change(clean, recorded[f"layer {name}"], sigma)
            matrix[row, -1] = recorded_site_change(clean, recorded[f"sites {name}"], attacks[name]["predicted"], sigma)
        own[-1] = brain_own_change(brain, neuroids, stimuli, image_ids, settings.eps, attack, seed, device)
    return TransferTest(changes, matrix_dataset(names, image_ids, matrix, own, layer))


def recorded_site_change(clean: np.ndarray, perturbed: np.ndarray, predicted: np.ndarray, sigma: np.ndarray) -> float:
    """The brain's mean change under a candidate's site-model perturbations, in s.d.: each image
    counts for its own site, in the sign the candidate predicted. `clean` (image, repetition,
    site), `perturbed` (image, site, direction, repetition, site), `predicted` (image, site, direction)."""
    change = own_site(np.nanmean(perturbed, axis=3)) - np.nanmean(clean, axis=1)[:, :, None]
    return float(np.mean(np.sign(predicted) * change / sigma[None, :, None]))


def matrix_dataset(
    names: Sequence[str], image_ids: Sequence[str], matrix: np.ndarray, own: np.ndarray, layer: np.ndarray
) -> xr.Dataset:
    """The transfer matrix (attacker, target: every candidate, then the brain), each target's own
    change, their ratio, and the layer perturbations (candidate, image, y, x, channel)."""
    return xr.Dataset(
        {
            "transfer_change": (("attacker", "target"), matrix),
            "own_change": ("target", own),
            "transfer_relative": (("attacker", "target"), matrix / own[None, :]),
            "layer_perturbed": (("candidate", "image", "y", "x", "channel"), layer),
        },
        coords={"attacker": list(names), "target": [*names, BRAIN_TARGET], "image": list(image_ids)},
    )


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
