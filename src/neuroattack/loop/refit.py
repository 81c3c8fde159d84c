"""Between loop rounds: what round r's surrogate is refitted on, and how.

Round r learns from the clean recordings plus every earlier round's recordings of its
perturbed and random-direction images. `loop.refit: readout` refits each site's linear
readout of the surrogate's (fixed) features on them; `loop.refit: network` first fine-tunes the
surrogate network itself on them (`loop.finetune`), one weights file per round and network,
and then refits the readouts on the fine-tuned features. Round 1 is never refitted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack.brain.sitemodels import fit_to_recordings
from neuroattack.data.recordings import aligned_sites, mean_response
from neuroattack.loop.finetune import FinetuneSettings, finetune, held_out_groups
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import features_layer
from neuroattack.networks.layers import at_layer
from neuroattack.networks.readouts import infer

FINETUNED_ROUNDS = "finetuned_on_rounds"  # attr of a fine-tuned weights file: how many rounds it learnt from


@dataclass(frozen=True)
class Recorded:
    """Every image recorded before a round, and its recordings (the sites in the site models' order)."""

    stimuli: xr.Dataset  # pixels; `category`: a perturbed image's clean image's (the folds' strata)
    recordings: xr.Dataset
    clean_image: np.ndarray  # per image: the clean image it was made from (a clean image: itself)
    earlier_ids: tuple[np.ndarray, ...]  # per earlier round, the ids of its images


def recorded_before(
    stimuli: xr.Dataset,
    clean_recordings: xr.Dataset,
    earlier: Sequence[tuple[xr.Dataset, xr.Dataset]],
    neuroids: Sequence[str],
) -> Recorded:
    """The clean stimuli and recordings, plus every earlier round's perturbed and random-direction
    images and their recordings (`earlier`: (stimulus set, recordings) per round)."""
    parts_stimuli = [_pixels_and_category(stimuli, stimuli["category"].values)]
    parts_recordings = [_select_sites(clean_recordings, neuroids)]
    clean_image = [stimuli["stimulus_id"].values.astype(str)]
    earlier_ids = []
    for round_stimuli, recorded in earlier:
        new = round_stimuli.isel(stimulus_id=np.flatnonzero(round_stimuli["category"].values != "clean"))
        parts_stimuli.append(_pixels_and_category(new, new["clean_category"].values))
        clean_image.append(new["clean_stimulus_id"].values.astype(str))
        earlier_ids.append(new["stimulus_id"].values)
        keep = np.isin(recorded["stimulus_id"].values, new["stimulus_id"].values)
        parts_recordings.append(_select_sites(recorded.isel(presentation=np.flatnonzero(keep)), neuroids))
    pooled = xr.concat(parts_recordings, dim="presentation", coords="minimal", compat="override")
    pooled.attrs = clean_recordings.attrs
    all_stimuli = xr.concat(parts_stimuli, dim="stimulus_id")
    return Recorded(all_stimuli, pooled, np.concatenate(clean_image), tuple(earlier_ids))


def refit_site_models(
    first_models: xr.Dataset,
    surrogate: xr.Dataset,
    features: xr.Dataset,
    clean_recordings: xr.Dataset,
    stimuli: xr.Dataset,
    earlier: Sequence[tuple[xr.Dataset, xr.Dataset]],
    alphas: Sequence[float],
    folds: int,
    reliability_splits: int,
    seed: int,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Round r's site models: each site's linear readout of the surrogate's features (at the
    layer of `features`) refitted on everything recorded before round r. The sites are round
    1's (`first_models`), in its order. `surrogate` may be a fine-tuned network of the round
    (`finetune_member`): then every image's features are its own, the clean images' too."""
    neuroids = first_models["neuroid_id"].values.astype(str).tolist()
    network = network_from_dataset(surrogate, "surrogate", features_layer(features)).to(device or torch.device("cpu"))
    recorded = recorded_before(stimuli, clean_recordings, earlier, neuroids)
    if FINETUNED_ROUNDS in surrogate.attrs:
        activation = infer(network.features, recorded.stimuli["pixels"].values, device)
        parts = [_activation(activation, recorded.stimuli["stimulus_id"].values)]
    else:  # the clean images' features are the features file's; each round's images run apart
        parts = [features["activation"]]
        for ids in recorded.earlier_ids:
            pixels = recorded.stimuli["pixels"].sel(stimulus_id=ids).values
            parts.append(_activation(infer(network.features, pixels, device), ids))
    pooled_features = xr.Dataset({"activation": xr.concat(parts, dim="stimulus_id")}, attrs=features.attrs)
    models = fit_to_recordings(
        pooled_features,
        recorded.recordings,
        recorded.stimuli,
        alphas,
        folds,
        reliability_splits,
        seed,
        name=f"recordings of the clean images and of {len(earlier)} round(s)",
    )
    if models["neuroid_id"].values.astype(str).tolist() != neuroids:
        raise ValueError(
            "refitting changed the set of usable sites; the loop attacks round 1's sites in every round: "
            "check the later rounds' recordings (every site needs valid trials)"
        )
    models.attrs["rounds_fitted_on"] = len(earlier)
    return models


def finetune_member(
    first_models: xr.Dataset,
    weights: xr.Dataset,
    features: xr.Dataset,
    clean_recordings: xr.Dataset,
    stimuli: xr.Dataset,
    earlier: Sequence[tuple[xr.Dataset, xr.Dataset]],
    settings: FinetuneSettings,
    seed: int,
    device: torch.device | None = None,
) -> xr.Dataset:
    """A surrogate network fine-tuned, seen at the layer of `features`, to predict every site's
    trial-mean response to every image recorded before the round; a weights file like
    `weights` (the same tensors, new values) with attrs on how it was tuned. Always from the
    network's own starting weights, so round r's weights depend on the data alone."""
    if not earlier:
        raise ValueError("round 1 is never fine-tuned: there is nothing recorded of perturbed images yet")
    neuroids = first_models["neuroid_id"].values.astype(str).tolist()
    layer = features_layer(features)
    network = network_from_dataset(weights, "surrogate")
    recorded = recorded_before(stimuli, clean_recordings, earlier, neuroids)
    averaged = aligned_sites(mean_response(recorded.recordings), neuroids)
    means = averaged.sel(stimulus_id=recorded.stimuli["stimulus_id"].values).values.astype(np.float64)
    complete = np.isfinite(means).all(axis=1)  # an image without a valid trial of some site is left out
    held_out = held_out_groups(recorded.clean_image[complete], settings.held_out, seed)
    ids = recorded.stimuli["stimulus_id"].values[complete].astype(str).tolist()
    position = {name: index for index, name in enumerate(ids)}
    partner = np.array([position.get(clean, index) for index, clean in enumerate(recorded.clean_image[complete])])
    result = finetune(
        network,
        functools.partial(_features_at, layer=layer),
        recorded.stimuli["pixels"].values[complete],
        means[complete],
        held_out,
        settings,
        seed,
        device,
        partner,
    )
    tuned = weights.copy(deep=True)
    for name in tuned.data_vars:
        if str(name) in result.state:
            tuned[name] = (tuned[name].dims, result.state[str(name)].numpy().astype(tuned[name].dtype))
    tuned.attrs = {
        **weights.attrs,
        FINETUNED_ROUNDS: len(earlier),
        "finetune_layer": layer,
        "finetune_from_layer": settings.from_layer or "",
        "finetune_held_out_error": np.asarray(result.held_out_error),
        "finetune_best_epoch": result.best_epoch,
        "finetune_trained_parameters": result.trained_parameters,
        "finetune_images": int(complete.sum()),
    }
    return tuned


def _features_at(network: nn.Module, layer: str) -> Callable[[Tensor], Tensor]:
    features: Callable[[Tensor], Tensor] = at_layer(network, layer).features  # type: ignore[assignment]
    return features


def _activation(values: np.ndarray, ids: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        values, dims=("stimulus_id", "unit"), coords={"stimulus_id": ids, "unit": np.arange(values.shape[1])}
    )


def _pixels_and_category(stimuli: xr.Dataset, category: np.ndarray) -> xr.Dataset:
    """A bare stimuli dataset: pixels and the given categories (the folds' strata)."""
    return xr.Dataset(
        {"pixels": (("stimulus_id", "y", "x", "channel"), stimuli["pixels"].values)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "category": ("stimulus_id", np.asarray(category))},
    )


def _select_sites(recordings: xr.Dataset, neuroids: Sequence[str]) -> xr.Dataset:
    positions = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    missing = [n for n in neuroids if n not in positions]
    if missing:
        raise KeyError(f"recordings lack sites of the site models: {missing[:5]}; record every site in every round")
    return recordings.isel(site=[positions[n] for n in neuroids])
