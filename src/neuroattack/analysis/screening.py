"""Choosing the surrogate: every candidate network screened against the recorded sites.

Three criteria per candidate (its penultimate layer):
- `cka`: linear CKA between the features and the trial-averaged site responses on the
  clean stimuli, with a bootstrap interval over stimuli;
- `predictivity`: Brain-Score's convention for MajajHong2015 IT (PLS regression, 10 splits
  of 90/10 stratified by category, Pearson r per site on the held-out stimuli, median over
  sites, mean over splits); ceiling = split-half reliability (median over sites,
  Spearman-Brown), ceiled score = r^2 / ceiling, raw r kept beside it;
- `transfer`: perturbations that maximise the change of the whole layer (no mapping to the
  sites at all) are shown to the brain; the noise-corrected population change they cause.

The transfer matrix: every candidate's site-model perturbations evaluated on every other
candidate's site models and on the brain, relative to what the target's own attack achieves.
`surrogate.network: auto` takes the candidate with the best score under `criterion`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from torch import Tensor, nn

from neuroattack.attacks.engine import AttackSettings, attack_grid, pgd_attack
from neuroattack.attacks.untargeted import attack_targets, attacked_stimuli, white_box_changes
from neuroattack.brain.simulated import record
from neuroattack.brain.sitemodels import fit_to_recordings, surrogate_response
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS
from neuroattack.data.recordings import aligned_sites, columnwise_pearson, mean_response, repetition_tensor
from neuroattack.data.stimuli import make_stimuli
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.models import FeatureNetwork, network_from_dataset
from neuroattack.networks.readouts import LinearSiteResponse, infer, to_tensor

log = logging.getLogger(__name__)

CRITERIA = ("predictivity", "cka", "transfer")
BRAIN = "brain"  # the transfer matrix's column of recorded responses
CONFIDENCE = 0.95


# --- CKA ---------------------------------------------------------------------------------


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment between two (stimuli x units) matrices: 1 for the
    same representation, invariant to isotropic scaling and orthogonal transforms of either."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else float("nan")


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap samples (NaN samples left out)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def bootstrap_cka(x: np.ndarray, y: np.ndarray, draws: int, seed: int) -> tuple[float, float, float]:
    """CKA and its bootstrap interval over stimuli (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    samples = np.array([linear_cka(x[rows], y[rows]) for rows in rng.integers(len(x), size=(draws, len(x)))])
    return (linear_cka(x, y), *interval(samples))


# --- predictivity in Brain-Score's convention ---------------------------------------------


@dataclass(frozen=True)
class PredictivitySettings:
    """Brain-Score's MajajHong2015 IT-pls: PLS with 25 components, 10 splits of 90/10."""

    components: int = 25
    splits: int = 10
    test_fraction: float = 0.1


def stratified_splits(
    categories: np.ndarray, splits: int, test_fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices of `splits` random splits, stratified by category."""
    classes, held_out = len(set(np.asarray(categories).tolist())), int(np.ceil(test_fraction * len(categories)))
    if held_out < classes:
        raise ValueError(
            f"screening.test_fraction = {test_fraction} holds out {held_out} of {len(categories)} stimuli, fewer than "
            f"their {classes} categories, so a split cannot hold one of each; raise screening.test_fraction to at "
            f"least {classes / len(categories):.2f}"
        )
    # train_size as Brain-Score gives it (test_size would round the other way for some counts)
    splitter = StratifiedShuffleSplit(n_splits=splits, train_size=1 - test_fraction, random_state=seed)
    rows = np.zeros((len(categories), 1))
    return [(train, test) for train, test in splitter.split(rows, np.asarray(categories))]


def usable_components(requested: int, train_rows: int, features: int) -> int:
    """PLS components the data allow: at most the features and one fewer than the training rows."""
    return max(1, min(requested, features, train_rows - 1))


def split_correlations(
    features: np.ndarray,
    responses: np.ndarray,
    categories: np.ndarray,
    settings: PredictivitySettings,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Pearson r of every site on the held-out stimuli of every split, (splits, sites), and
    the PLS components used (scikit-learn's PLSRegression, scale=False as Brain-Score)."""
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    folds = stratified_splits(categories, settings.splits, settings.test_fraction, seed)
    components = usable_components(settings.components, len(folds[0][0]), features.shape[1])
    scores = []
    for train, test in folds:
        model = PLSRegression(n_components=components, scale=False).fit(features[train], responses[train])
        predicted = np.reshape(model.predict(features[test]), (len(test), -1))
        scores.append(columnwise_pearson(predicted, responses[test]))
    return np.stack(scores), components


def ceiling_per_split(repetitions: np.ndarray, splits: int, seed: int) -> np.ndarray:
    """Brain-Score's internal consistency, one value per split: the repetitions (stimulus,
    repetition, site) split in random halves (scikit-learn's ShuffleSplit, as Brain-Score), Pearson
    r per site between the halves' means, Spearman-Brown corrected per site, median over sites."""
    splitter = ShuffleSplit(n_splits=splits, train_size=0.5, random_state=seed)
    values = []
    for half_a, half_b in splitter.split(np.zeros(repetitions.shape[1])):
        r = columnwise_pearson(np.nanmean(repetitions[:, half_a], axis=1), np.nanmean(repetitions[:, half_b], axis=1))
        values.append(float(np.nanmedian(2 * r / (1 + r))))
    return np.asarray(values)


def ceiled(r: float | np.ndarray, ceiling: float | np.ndarray) -> float | np.ndarray:
    """Brain-Score's ceiled predictivity since January 2026: explained variance r^2 / ceiling."""
    return np.square(r) / ceiling


def predictivity(correlations: np.ndarray, ceilings: np.ndarray, draws: int, seed: int) -> dict[str, float]:
    """Raw r (median over sites, mean over splits), the ceiling, the ceiled score, and bootstrap
    intervals over sites for both (the sites are resampled, the splits kept)."""

    def raw(columns: np.ndarray) -> float:
        return float(np.mean(np.nanmedian(correlations[:, columns], axis=1)))

    sites = correlations.shape[1]
    ceiling = float(np.mean(ceilings))
    r = raw(np.arange(sites))
    rng = np.random.default_rng(seed)
    samples = np.array([raw(columns) for columns in rng.integers(sites, size=(draws, sites))])
    low, high = interval(samples)
    ceiled_low, ceiled_high = interval(np.asarray(ceiled(np.clip(samples, 0, None), ceiling)))
    return {
        "predictivity_r": r,
        "predictivity_r_low": low,
        "predictivity_r_high": high,
        "ceiling": ceiling,
        "predictivity": float(ceiled(r, ceiling)),
        "predictivity_low": ceiled_low,
        "predictivity_high": ceiled_high,
    }


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


# --- the screening ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What the screening knows of one network."""

    name: str
    network: FeatureNetwork
    weights: xr.Dataset
    features: np.ndarray  # (stimulus, unit), stimuli in the recordings' order
    site_models: xr.Dataset


def choose(scores: xr.Dataset, criterion: str) -> str:
    """The candidate with the highest score under `criterion` (the first of equals)."""
    if criterion not in CRITERIA:
        raise ValueError(f"screening.criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    values = scores[criterion].values.astype(np.float64)
    if not np.isfinite(values).any():
        raise ValueError(
            f"no candidate has a finite {criterion} score, so surrogate.network: auto cannot choose by it; "
            "set screening.criterion to another criterion, or name the surrogate in surrogate.network"
        )
    return str(scores["candidate"].values[int(np.nanargmax(values))])


def _site_changes(
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


def _own_site_response(model: LinearSiteResponse, pixels: np.ndarray, device: torch.device) -> np.ndarray:
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
            shown = _own_site_response(model, attacks[attacker.name]["perturbed"], device)
            matrix[row, column] = np.mean(sign * (shown - clean[:, :, None]) / sigma[None, :, None])
    return matrix


def _brain_session(
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


def screen(
    stimuli: xr.Dataset,
    recordings: xr.Dataset,
    networks: Mapping[str, xr.Dataset],
    features: Mapping[str, xr.Dataset],
    surrogate: Mapping[str, Any],
    screening: Mapping[str, Any],
    attack: AttackSettings,
    seed: int,
    sites: int | None = None,
    brain: xr.Dataset | None = None,
    repetitions: int = 0,
    recording_seed: int = 0,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Every criterion for every network, the transfer matrix, and the pick under each criterion.
    Without `brain` (real recordings) the criteria that need recordings of perturbed images are NaN."""
    device = device or torch.device("cpu")
    names = list(networks)
    draws = int(screening["bootstrap"])
    averaged = mean_response(recordings)
    ids = averaged["stimulus_id"].values
    candidates = [
        Candidate(
            name,
            network_from_dataset(networks[name], name),
            networks[name],
            features[name]["activation"].sel(stimulus_id=ids).values,
            fit_to_recordings(
                features[name],
                recordings,
                stimuli,
                surrogate["alphas"],
                int(surrogate["folds"]),
                int(surrogate["reliability_splits"]),
                seed,
                sites,
            ),
        )
        for name in names
    ]
    neuroids = candidates[0].site_models["neuroid_id"].values
    responses = aligned_sites(averaged, neuroids).values.astype(np.float64)  # (stimulus, site)
    categories = stimuli["category"].sel(stimulus_id=ids).values
    complete = np.asarray(np.isfinite(responses).all(axis=1))  # a stimulus lacking a valid trial of a site: left out
    if not complete.all():
        log.warning(
            "screening: %d of %d stimuli lack a valid trial of some site; CKA and predictivity leave them out",
            int((~complete).sum()),
            len(complete),
        )
    responses, categories = responses[complete], categories[complete]
    settings = PredictivitySettings(
        int(screening["pls_components"]),
        int(screening["splits"]),
        float(screening["test_fraction"]),
    )
    repetition_values, _ = repetition_tensor(recordings)
    recorded_order = list(recordings["neuroid_id"].values.astype(str))
    site_columns = [recorded_order.index(str(n)) for n in neuroids]
    ceilings = ceiling_per_split(repetition_values[:, :, site_columns], settings.splits, seed)
    rows: dict[str, list[float]] = {}
    components = 0
    for candidate in candidates:
        features_kept = candidate.features[complete]
        cka, cka_low, cka_high = bootstrap_cka(features_kept, responses, draws, seed)
        correlations, components = split_correlations(features_kept, responses, categories, settings, seed)
        entry = {
            "cka": cka,
            "cka_low": cka_low,
            "cka_high": cka_high,
            **predictivity(correlations, ceilings, draws, seed),
        }
        for key, value in entry.items():
            rows.setdefault(key, []).append(value)
        log.info(
            "%s: CKA %.3f, predictivity r %.3f (ceiled %.3f)",
            candidate.name,
            cka,
            entry["predictivity_r"],
            entry["predictivity"],
        )
    result = xr.Dataset(
        {key: ("candidate", np.asarray(values)) for key, values in rows.items()},
        coords={"candidate": names, "neuroid_id": ("site", neuroids)},
    )
    result["training_eps"] = ("candidate", [float(networks[n].attrs.get("training_eps", np.nan)) for n in names])
    result = result.merge(
        _transfer(
            candidates,
            stimuli,
            recordings,
            neuroids,
            screening,
            attack,
            seed,
            brain,
            repetitions,
            recording_seed,
            device,
        )
    )
    result.attrs = {
        "layer": "penultimate",
        "pls_components": components,
        "pls_components_requested": settings.components,
        "splits": settings.splits,
        "test_fraction": settings.test_fraction,
        "bootstrap": draws,
        "confidence": CONFIDENCE,
        "transfer_eps": float(screening["eps"]),
    }
    for criterion in CRITERIA:
        finite = np.isfinite(result[criterion].values).any()
        result.attrs[f"pick_by_{criterion}"] = choose(result, criterion) if finite else ""
    if brain is not None:
        closeness = closeness_to_brain(result, float(brain.attrs.get("training_eps", np.nan)))
        result["distance_to_brain"] = closeness["distance_to_brain"]
        result.attrs.update(closeness.attrs)
    return result


def closeness_to_brain(scores: xr.Dataset, brain_eps: float) -> xr.Dataset:
    """In silico the answer is known: `distance_to_brain` = |training eps - the brain network's|,
    and per criterion the Spearman correlation between its scores and closeness (-distance):
    1 when the criterion ranks the candidates exactly by closeness to the brain."""
    distance = np.abs(scores["training_eps"].values.astype(np.float64) - brain_eps)
    agreement = {}
    for criterion in CRITERIA:
        values = scores[criterion].values.astype(np.float64)
        usable = np.isfinite(values)
        closeness = pd.Series(-distance[usable])
        rho = pd.Series(values[usable]).corr(closeness, method="spearman") if usable.sum() > 2 else np.nan
        agreement[f"closeness_rank_correlation_{criterion}"] = float(rho)
    result = xr.Dataset({"distance_to_brain": ("candidate", distance)}, coords={"candidate": scores["candidate"]})
    result.attrs = {"brain_training_eps": brain_eps, **agreement}
    return result


def _transfer(
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
    sigma = aligned_sites(mean_response(recordings), neuroids).std("stimulus_id", ddof=1).values
    attacks = _site_changes(candidates, stimuli, image_ids, eps, settings, seed, device)
    names = [c.name for c in candidates]
    targets = [*names, BRAIN]
    matrix = np.full((len(names), len(targets)), np.nan)
    matrix[:, : len(names)] = transfer_matrix(candidates, attacks, clean_pixels, sigma, device)
    own = np.append(np.diag(matrix), np.nan)
    transfer = np.full((len(names), 3), np.nan)
    layer = np.stack([_layer_perturbations(c, clean_pixels, eps, settings, seed, device) for c in candidates])
    if brain is not None:
        shown = {f"layer {name}": layer[row] for row, name in enumerate(names)}
        shown.update({f"sites {name}": attacks[name]["perturbed"] for name in names})
        clean, recorded = _brain_session(brain, neuroids, clean_pixels, shown, repetitions, recording_seed)
        for row, candidate in enumerate(candidates):
            per_image = noise_corrected_change(clean, recorded[f"layer {candidate.name}"], sigma)
            transfer[row] = population_change(per_image, draws, seed)
            # site-model perturbations: each image counts for its own site, in the attacker's predicted sign
            perturbed = np.nanmean(recorded[f"sites {candidate.name}"], axis=3)  # (image, site, direction, site)
            change = own_site(perturbed) - np.nanmean(clean, axis=1)[:, :, None]
            predicted_sign = np.sign(attacks[candidate.name]["predicted"])
            matrix[row, -1] = np.mean(predicted_sign * change / sigma[None, :, None])
        own[-1] = _brain_own_change(brain, neuroids, stimuli, image_ids, eps, settings, seed, device)
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


def _brain_own_change(
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


def _layer_perturbations(
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
