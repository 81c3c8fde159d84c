"""A tighter bound from what every round records (`loop.recorded_gradient`).

Every perturbed image of a round is recorded at every site, so the recordings of the rounds
before round r hold each site's change along many directions of each clean image: every
site's attack at every eps and direction, and the random directions. To first order a
site's change along a shown perturbation d is g . d, with g its input gradient at the clean
image. A ridge estimate of g from the changes at one budget (`eps`, whose directions all
have the same norm) is noisy but points where the recorded brain moves; the surrogate's own
gradient p points where the site model moves. Round r attacks each site along both: its
response becomes the site model's plus a linear term w . delta, with

    w = weight * |p| * r / |r|,    r = D^T (D D^T + ridge * eps^2 I)^-1 y

(D: the shown perturbations at that eps as rows, y: the site's recorded changes along them,
each minus the same round's clean response), so that at the clean image the attack's
direction is p/|p| + weight * r/|r| and the search stays the surrogate's, nonlinear, away
from it. The estimate is first order and was measured at norm eps: beyond that norm the
linear term stops growing (`WithRecordedGradient`). Off (weight 0), round r attacks the site
models alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.data.recordings import aligned_sites, mean_response
from neuroattack.networks.readouts import to_tensor


@dataclass(frozen=True)
class RecordedChanges:
    """One clean image's shown perturbations at one budget and every site's recorded change along them."""

    directions: np.ndarray  # (shown, C*H*W): the shown 8-bit image minus the clean one, [0, 1] pixel units
    changes: np.ndarray  # (shown, sites): recorded mean response minus the same round's clean mean (NaN: not recorded)


def round_means(rounds: Sequence[tuple[xr.Dataset, xr.Dataset]]) -> list[tuple[xr.Dataset, xr.DataArray]]:
    """(round stimuli, their recordings) of each round as (round stimuli, trial-averaged responses):
    what `recorded_changes` reads, averaged once for every image of a job."""
    return [(stimuli, mean_response(recordings)) for stimuli, recordings in rounds]


def recorded_changes(
    rounds: Sequence[tuple[xr.Dataset, xr.DataArray]], stimulus_id: str, neuroid_id: Sequence[str], eps: float
) -> RecordedChanges:
    """Every image shown in `rounds` ((round stimuli, their trial-averaged responses) each,
    `round_means`) that perturbs the clean image `stimulus_id` at budget `eps`, the sites in
    `neuroid_id`'s order."""
    directions, changes = [], []
    for number, (stimuli, mean_responses) in enumerate(rounds, start=1):
        means = aligned_sites(mean_responses, neuroid_id)
        shown = (stimuli["clean_stimulus_id"].values.astype(str) == stimulus_id) & np.isclose(
            stimuli["eps"].values.astype(np.float64), eps, rtol=1e-5, atol=0
        )
        shown &= stimuli["category"].values.astype(str) != "clean"
        if stimulus_id not in set(means["stimulus_id"].values.astype(str).tolist()):
            raise ValueError(
                f"round {number}'s recordings have no response to the clean image {stimulus_id}; "
                "every round records its clean images"
            )
        clean = means.sel(stimulus_id=stimulus_id).values.astype(np.float64)
        ids = stimuli["stimulus_id"].values[shown]
        pixels = stimuli["pixels"]
        clean_pixels = to_tensor(pixels.sel(stimulus_id=[stimulus_id]).values).double()
        perturbed = to_tensor(pixels.sel(stimulus_id=ids).values).double()
        directions.append((perturbed - clean_pixels).flatten(1).numpy())
        changes.append(means.sel(stimulus_id=ids).values.astype(np.float64) - clean)
    return RecordedChanges(np.concatenate(directions), np.concatenate(changes))


def ridge_gradient(directions: np.ndarray, changes: np.ndarray, penalty: float) -> np.ndarray:
    """Per site, the ridge estimate of its gradient from `changes` (shown, sites) along
    `directions` (shown, P), each site on the rows it was recorded on: (sites, P)."""
    estimates = np.zeros((changes.shape[1], directions.shape[1]))
    for site in range(changes.shape[1]):
        recorded = np.isfinite(changes[:, site])
        if not recorded.any():
            continue
        rows = directions[recorded]
        gram = rows @ rows.T + penalty * np.eye(len(rows))
        estimates[site] = rows.T @ np.linalg.solve(gram, changes[recorded, site])
    return estimates


def correction_weights(surrogate_gradient: np.ndarray, estimate: np.ndarray, weight: float) -> np.ndarray:
    """w = weight * |p| * r / |r| per site (rows of `surrogate_gradient` p and of the ridge
    `estimate` r); zero where r is."""
    size = np.linalg.norm(estimate, axis=1, keepdims=True)
    unit = np.divide(estimate, size, out=np.zeros_like(estimate), where=size > 0)
    weights: np.ndarray = weight * np.linalg.norm(surrogate_gradient, axis=1, keepdims=True) * unit
    return weights


def site_gradients(response: nn.Module, image: Tensor, sites: int) -> np.ndarray:
    """Every site's input gradient of `response` at the clean `image` (1, C, H, W), float32: (sites, P)."""
    images = image.expand(sites, *image.shape[1:]).clone().requires_grad_(True)
    with torch.autocast(image.device.type, enabled=False):
        value = response(images, torch.arange(sites, device=image.device))
    (gradient,) = torch.autograd.grad(value.sum(), images)
    return gradient.flatten(1).double().cpu().numpy()


class WithRecordedGradient(nn.Module):
    """A site response plus each site's linear correction, trusted as far as the changes it
    was estimated from reached: response(x, t) + w[t] . d, where d = x - clean shortened to
    L2 norm `reach` where it is longer. Within `reach` the correction is linear; beyond it,
    it no longer grows, so at a larger budget the search is the site models' own."""

    weights: Tensor  # (sites, C, H, W), a buffer
    clean: Tensor  # (1, C, H, W), a buffer

    def __init__(self, response: nn.Module, weights: np.ndarray, clean: Tensor, reach: float = math.inf) -> None:
        super().__init__()
        self.response = response
        self.reach = reach
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32).view(-1, *clean.shape[1:]))
        self.register_buffer("clean", clean.float())

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        delta = (images.float() - self.clean).flatten(1)
        within = (self.reach / delta.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
        linear = (self.weights[target].flatten(1) * delta).sum(dim=1) * within
        corrected: Tensor = self.response(images, target).float() + linear
        return corrected


@dataclass(frozen=True)
class RecordedGradient:
    """`loop.recorded_gradient`: the correction's weight (0: off), the budget whose recorded
    changes estimate it, and the ridge penalty in units of that budget squared."""

    weight: float = 0.0
    eps: float = 1.0
    ridge: float = 100.0

    def corrected(
        self,
        response: nn.Module,
        image: Tensor,
        stimulus_id: str,
        neuroid_id: Sequence[str],
        rounds: Sequence[tuple[xr.Dataset, xr.DataArray]],
    ) -> nn.Module:
        """`response` (every site of `neuroid_id`) with each site's correction from the `rounds`
        recorded so far (`round_means`)."""
        if not self.weight or not rounds:
            return response
        recorded = recorded_changes(rounds, stimulus_id, neuroid_id, self.eps)
        if not len(recorded.directions):
            raise ValueError(
                f"loop.recorded_gradient.eps {self.eps}: no image of the earlier rounds perturbs {stimulus_id} "
                "at that eps; use one of attack.eps"
            )
        estimate = ridge_gradient(recorded.directions, recorded.changes, self.ridge * self.eps**2)
        weights = correction_weights(site_gradients(response, image, len(neuroid_id)), estimate, self.weight)
        return WithRecordedGradient(response, weights, image, reach=self.eps)
