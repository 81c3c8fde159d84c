"""One function per workflow stage: datasets in, datasets out.

The rule scripts only read files, call one of these, and write the result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from neuroattack import brain as brain_lib
from neuroattack import sensitivity as sens
from neuroattack.attack import AttackSettings, pgd_attack, random_direction_baseline
from neuroattack.models import Architecture, network_from_dataset, weights_to_dataset
from neuroattack.readouts import LinearSiteResponse, UnitResponse, batched_features, to_tensor
from neuroattack.recordings import aligned_sites, mean_response, split_half_reliability
from neuroattack.sitemodels import fit_site_models
from neuroattack.sources import image_folder_to_stimuli, make_stimuli
from neuroattack.stimuli import CATEGORIES, crops
from neuroattack.training import TrainingSettings, accuracy, train_network

SURROGATE = "surrogate"
log = logging.getLogger(__name__)


# --- stimuli and networks -------------------------------------------------------------


def embedded_stimuli(per_category: int, resolution: int, seed: int) -> xr.Dataset:
    pixels, labels = crops("stimuli", per_category, resolution, seed)
    counters: dict[int, int] = {}
    ids = []
    for label in labels:
        counters[label] = counters.get(label, 0) + 1
        ids.append(f"{CATEGORIES[label]}_{counters[label]:03d}")
    return make_stimuli(pixels, ids, [CATEGORIES[label] for label in labels])


Labelled = tuple[np.ndarray, np.ndarray]


def training_set(data: Mapping[str, Any], folder: str | None = None) -> tuple[Labelled, Labelled, list[str]]:
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
    test, train = order[:n_test], order[n_test:]
    return (pixels[train], labels[train]), (pixels[test], labels[test]), categories


def train_classifier(
    arch: Architecture,
    eps: float,
    seed: int,
    data: tuple[Labelled, Labelled, list[str]],
    settings: TrainingSettings,
    eval_eps: float,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Train one network (adversarially when eps > 0); report held-out clean and robust accuracy."""
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
            "categories": categories,
        },
    )


# --- features and site models ---------------------------------------------------------


def extract_features(
    weights: xr.Dataset, stimuli: xr.Dataset, name: str, device: torch.device | None = None
) -> xr.Dataset:
    network = network_from_dataset(weights, name)
    values = batched_features(network, stimuli["pixels"].values, device=device)
    return xr.Dataset(
        {"activation": (("stimulus_id", "unit"), values)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "unit": np.arange(values.shape[1])},
        attrs={"network": name, "layer": "penultimate"},
    )


def select_units(features: xr.Dataset, count: int, seed: int) -> np.ndarray:
    """`count` penultimate units (seeded) among those that vary over the stimuli."""
    spread = features["activation"].std("stimulus_id").values
    alive = np.flatnonzero(spread > 1e-6)
    if len(alive) < count:
        raise ValueError(f"network {features.attrs.get('network')}: only {len(alive)} units vary; lower units_per_network")
    return np.sort(np.random.default_rng(seed).choice(alive, size=count, replace=False))


def site_models(
    features: xr.Dataset,
    recordings: xr.Dataset,
    stimuli: xr.Dataset,
    settings: Mapping[str, Any],
    seed: int,
    sites: int | None = None,
) -> xr.Dataset:
    """Fit a readout per site; with `sites`, only the that many most reliable sites."""
    unknown = sorted(set(recordings["stimulus_id"].values.tolist()) - set(stimuli["stimulus_id"].values.tolist()))
    if unknown:
        raise KeyError(f"recordings name {len(unknown)} stimuli missing from the stimulus set, e.g. {unknown[:3]}")
    reliability = split_half_reliability(recordings, settings["reliability_splits"], seed).values
    if sites is not None and sites < len(reliability):
        keep = np.sort(np.argsort(-np.nan_to_num(reliability, nan=-np.inf))[:sites])
        recordings, reliability = recordings.isel(neuroid=keep), reliability[keep]
    averaged = mean_response(recordings)
    ids = averaged["stimulus_id"].values
    fitted = fit_site_models(
        features["activation"].sel(stimulus_id=ids).values,
        averaged.values,
        stimuli["category"].sel(stimulus_id=ids).values,
        averaged["neuroid_id"].values.tolist(),
        reliability,
        list(settings["alphas"]),
        settings["folds"],
        seed,
    )
    fitted.attrs["surrogate_network"] = features.attrs["network"]
    return fitted


# --- attacks --------------------------------------------------------------------------


def attacked_stimuli(stimuli: xr.Dataset, count: int, seed: int) -> list[str]:
    """The clean images to attack: a seeded sample of the stimulus set."""
    ids = stimuli["stimulus_id"].values
    if count > len(ids):
        raise ValueError(f"attack.images = {count} but the stimulus set has only {len(ids)} images")
    return [str(s) for s in np.random.default_rng(seed).choice(ids, size=count, replace=False)]


def surrogate_response(surrogate: xr.Dataset, models: xr.Dataset, path: str = SURROGATE) -> LinearSiteResponse:
    """Every site's predicted response: the surrogate network's features through the fitted readouts."""
    return LinearSiteResponse(network_from_dataset(surrogate, path), models["weight"].values, models["bias"].values)


def _attack_grid(
    response: torch.nn.Module,
    image: torch.Tensor,
    targets: np.ndarray,
    eps_grid: list[float],
    settings: AttackSettings,
    seed: int,
) -> dict[str, np.ndarray]:
    """Attack every (target, eps, direction) of one image; arrays shaped (target, eps, direction).
    Runs where `image` lives (the response module is moved there)."""
    device = image.device
    response = response.to(device)
    grid = np.stack(np.meshgrid(np.arange(len(targets)), np.arange(len(eps_grid)), [0, 1], indexing="ij"), -1)
    rows = grid.reshape(-1, 3)
    target = torch.as_tensor(targets[rows[:, 0]], dtype=torch.long, device=device)
    eps = torch.as_tensor(np.asarray(eps_grid, dtype=np.float32)[rows[:, 1]], device=device)
    direction = torch.as_tensor(np.where(rows[:, 2] == 0, 1.0, -1.0).astype(np.float32), device=device)
    images = image.expand(len(rows), -1, -1, -1)
    result = pgd_attack(response, images, target, eps, direction, settings, seed)
    baseline = random_direction_baseline(response, images, target, eps, seed + 1)
    shape = grid.shape[:3]
    def host(values: torch.Tensor) -> np.ndarray:
        return values.detach().float().cpu().numpy().reshape(shape)

    return {
        "clean": host(result.clean)[:, 0, 0],
        "change": host(result.change),
        "delta_norm": host(result.delta_norm),
        "random_change": host(baseline.change),
        "perturbed": result.perturbed.permute(0, 2, 3, 1).cpu().numpy().reshape(*shape, *image.shape[2:], 3),
        "passes": np.array([result.forward_passes, result.backward_passes]),
    }


def attack_image(
    stimulus_id: str,
    stimuli: xr.Dataset,
    networks: Mapping[str, xr.Dataset],
    features: Mapping[str, xr.Dataset],
    surrogate: xr.Dataset,
    models: xr.Dataset,
    settings: AttackSettings,
    eps_grid: list[float],
    units_per_network: int,
    seed: int,
    unit_seed: int,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Attack one clean image: every site's surrogate, and sampled units of every network.
    `unit_seed` picks the units (the same for every image); `seed` the attack's starts."""
    image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(device or torch.device("cpu"))
    coords = {"eps": eps_grid, "direction": list(sens.DIRECTIONS)}
    site_response = surrogate_response(surrogate, models)
    sites = _attack_grid(site_response, image, np.arange(models.sizes["site"]), eps_grid, settings, seed)
    ds = xr.Dataset(
        {
            "site_clean": ("site", sites["clean"]),
            "site_change": (("site", "eps", "direction"), sites["change"]),
            "site_delta_norm": (("site", "eps", "direction"), sites["delta_norm"]),
            "site_random_change": (("site", "eps", "direction"), sites["random_change"]),
            "perturbed": (("site", "eps", "direction", "y", "x", "channel"), sites["perturbed"]),
        },
        coords={**coords, "neuroid_id": ("site", models["neuroid_id"].values)},
    )
    unit_parts = []
    for name, weights in networks.items():
        units = select_units(features[name], units_per_network, unit_seed)
        result = _attack_grid(UnitResponse(network_from_dataset(weights, name)), image, units, eps_grid, settings, seed)
        unit_parts.append(
            xr.Dataset(
                {
                    "unit_clean": ("unit", result["clean"]),
                    "unit_change": (("unit", "eps", "direction"), result["change"]),
                    "unit_delta_norm": (("unit", "eps", "direction"), result["delta_norm"]),
                    "unit_random_change": (("unit", "eps", "direction"), result["random_change"]),
                },
                coords={**coords, "network": ("unit", [name] * len(units)), "unit_index": ("unit", units)},
            )
        )
    if unit_parts:
        ds = ds.merge(xr.concat(unit_parts, dim="unit"))
    ds.attrs = {
        "stimulus_id": stimulus_id,
        "forward_passes_per_row": int(sites["passes"][0]),
        "backward_passes_per_row": int(sites["passes"][1]),
        "rows_per_target": len(eps_grid) * 2,
        **{f"attack_{k}": v for k, v in vars(settings).items()},
        "attack_search_precision": settings.search_precision(image.device),
    }
    return ds


# --- recording perturbed images, validation, sensitivity ------------------------------


def perturbed_index(attacks: list[xr.Dataset]) -> xr.Dataset:
    """What each image of the session is, without pixels: every attacked clean image,
    then every site's perturbed images in (image, site, eps, direction) order."""
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    neuroids = attacks[0]["neuroid_id"].values.astype(str)
    eps_grid, directions = attacks[0]["eps"].values, attacks[0]["direction"].values.astype(str)
    image, site, eps, direction = (
        index.ravel()
        for index in np.meshgrid(
            np.arange(len(clean_ids)), np.arange(len(neuroids)), np.arange(len(eps_grid)), np.arange(len(directions)),
            indexing="ij",
        )
    )
    perturbed_ids = [
        f"{clean_ids[i]}__{neuroids[s]}__eps{eps_grid[e]:g}__{directions[d]}"
        for i, s, e, d in zip(image, site, eps, direction, strict=True)
    ]
    n_clean = len(clean_ids)
    return xr.Dataset(
        coords={
            "stimulus_id": ("stimulus_id", np.asarray(clean_ids + perturbed_ids, dtype=str)),
            "category": ("stimulus_id", np.asarray(["clean"] * n_clean + ["perturbed"] * len(perturbed_ids), dtype=str)),
            "clean_stimulus_id": ("stimulus_id", np.asarray(clean_ids + [clean_ids[i] for i in image], dtype=str)),
            "target_neuroid_id": ("stimulus_id", np.concatenate([np.full(n_clean, ""), neuroids[site]]).astype(str)),
            "eps": ("stimulus_id", np.concatenate([np.zeros(n_clean), eps_grid[eps].astype(float)])),
            "direction": ("stimulus_id", np.concatenate([np.full(n_clean, ""), directions[direction]]).astype(str)),
        }
    )


def perturbed_stimulus_set(stimuli: xr.Dataset, attacks: list[xr.Dataset]) -> xr.Dataset:
    """The images to show in one session (`perturbed_index`'s order and coords), with pixels."""
    index = perturbed_index(attacks)
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    perturbed = [a["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values for a in attacks]
    pixels = np.concatenate(
        [stimuli["pixels"].sel(stimulus_id=clean_ids).values, *(p.reshape(-1, *p.shape[3:]) for p in perturbed)]
    )
    shown = make_stimuli(pixels, index["stimulus_id"].values, index["category"].values)
    return shown.assign_coords({name: index[name] for name in index.coords if name not in shown.coords})


def responses_to_attacks(shown: xr.Dataset, recordings: xr.Dataset, attacks: list[xr.Dataset]) -> xr.Dataset:
    """Predicted and recorded responses, (site, image, eps, direction), from recordings of
    the images of `perturbed_index` (each perturbed image counts for its target site)."""
    averaged = mean_response(recordings)
    missing = sorted(set(shown["stimulus_id"].values.tolist()) - set(averaged["stimulus_id"].values.tolist()))
    if missing:
        raise KeyError(f"recordings lack {len(missing)} of the shown images, e.g. {missing[:3]}; record every image of the set")
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    neuroids = attacks[0]["neuroid_id"].values
    averaged = aligned_sites(averaged, neuroids)  # (stimulus_id, site)
    clean = averaged.sel(stimulus_id=clean_ids).values  # (image, site)
    perturbed_rows = shown.isel(stimulus_id=slice(len(clean_ids), None))
    recorded = averaged.sel(stimulus_id=perturbed_rows["stimulus_id"].values).values  # (row, site)
    eps_grid, directions = attacks[0]["eps"].values, attacks[0]["direction"].values

    def position(values: xr.DataArray, labels: Any) -> np.ndarray:
        return pd.Index(np.asarray(labels)).get_indexer(np.asarray(values.values, dtype=np.asarray(labels).dtype))

    site = position(perturbed_rows["target_neuroid_id"], neuroids.astype(str))
    own = np.full((len(neuroids), len(clean_ids), len(eps_grid), len(directions)), np.nan)
    own[
        site,
        position(perturbed_rows["clean_stimulus_id"], clean_ids),
        position(perturbed_rows["eps"], eps_grid.astype(float)),
        position(perturbed_rows["direction"], directions.astype(str)),
    ] = recorded[np.arange(len(site)), site]
    dims = ("site", "image", "eps", "direction")
    predicted_change = xr.concat([a["site_change"] for a in attacks], dim="image").transpose(*dims)
    predicted_clean = xr.concat([a["site_clean"] for a in attacks], dim="image").transpose("site", "image")
    return xr.Dataset(
        {
            "recorded_clean": (("site", "image"), clean.T),
            "recorded": (dims, own),
            "recorded_change": (dims, own - clean.T[:, :, None, None]),
            "predicted_clean": (("site", "image"), predicted_clean.values),
            "predicted_change": (dims, predicted_change.values),
        },
        coords={"image": clean_ids, "eps": eps_grid, "direction": directions, "neuroid_id": ("site", neuroids)},
    )


def record_attacks(
    brain: xr.Dataset, stimuli: xr.Dataset, attacks: list[xr.Dataset], repetitions: int, seed: int
) -> xr.Dataset:
    """In silico: show the clean and perturbed images to the simulated brain in one session."""
    shown = perturbed_stimulus_set(stimuli, attacks)
    recordings = brain_lib.record(
        brain, shown["pixels"].values, shown["stimulus_id"].values.tolist(), repetitions, seed
    )
    responses = responses_to_attacks(shown, recordings, attacks)
    responses.attrs["repetitions"] = repetitions
    return responses


def brain_white_box(
    brain: xr.Dataset,
    stimuli: xr.Dataset,
    image_ids: list[str],
    settings: AttackSettings,
    eps_grid: list[float],
    seed: int,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Attack the simulated sites directly (validation only: reads the brain's weights)."""
    device = device or torch.device("cpu")
    model = brain_lib.expected_responses(brain)
    sites = np.arange(brain.sizes["site"])
    with torch.no_grad():
        sigma = model.all_sites(to_tensor(stimuli["pixels"].values)).double().numpy().std(axis=0, ddof=1)
    changes = []
    for number, sid in enumerate(image_ids, 1):
        image = to_tensor(stimuli["pixels"].sel(stimulus_id=[sid]).values).to(device)
        changes.append(_attack_grid(model, image, sites, eps_grid, settings, seed)["change"])
        log.info("white-box attack: image %d/%d done", number, len(image_ids))
    return xr.Dataset(
        {"change": (("image", "site", "eps", "direction"), np.stack(changes)), "sigma": ("site", sigma)},
        coords={"image": image_ids, "eps": eps_grid, "direction": list(sens.DIRECTIONS)},
    )


def sensitivity(
    attacks: list[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    features: Mapping[str, xr.Dataset],
    white_box: xr.Dataset | None,
    bootstrap: int,
    random_pairs: int,
    seed: int,
) -> xr.Dataset:
    """s~(eps) with bootstrap CIs for every population, and the reference levels."""
    clean_means = aligned_sites(mean_response(recordings), attacks[0]["neuroid_id"].values)  # (stimulus_id, site)
    site_sigma = xr.DataArray(clean_means.std("stimulus_id", ddof=1).values, dims="site")
    populations: dict[str, xr.DataArray] = {}
    pair_levels: dict[str, float] = {}

    def as_units(array: xr.DataArray) -> xr.DataArray:
        return array.rename({"site": "unit"}) if "site" in array.dims else array

    def over_images(variable: str) -> xr.DataArray:
        return xr.concat([a[variable] for a in attacks], dim="image")

    if responses is not None:
        populations["brain (black box)"] = as_units(
            sens.sign_corrected(responses["predicted_change"], responses["recorded_change"], site_sigma)
        )
    populations["surrogate (predicted)"] = as_units(sens.white_box(over_images("site_change"), site_sigma))
    populations["random directions (surrogate)"] = as_units(sens.white_box(over_images("site_random_change"), site_sigma))
    pair_levels["brain (black box)" if responses is not None else "surrogate (predicted)"] = sens.random_pair_level(
        clean_means.values, random_pairs, seed
    )
    if white_box is not None:
        populations["brain (white box)"] = as_units(sens.white_box(white_box["change"], white_box["sigma"]))
    reference = attacks[0]["unit_index"].values
    for attack in attacks:
        if not np.array_equal(attack["unit_index"].values, reference):
            raise ValueError(
                f"attack files disagree on the attacked units ({attack.attrs['stimulus_id']}); delete the attacks folder and rerun"
            )
    unit_change = xr.concat(
        [a[["unit_change", "unit_random_change"]] for a in attacks], dim="image", coords="minimal", compat="override"
    )
    for name, feats in features.items():
        part = unit_change.isel(unit=np.flatnonzero(unit_change["network"].values == name))
        activation = feats["activation"].sel(unit=part["unit_index"].values)
        sigma = xr.DataArray(activation.std("stimulus_id", ddof=1).values, dims="unit")
        populations[name] = sens.white_box(part["unit_change"], sigma)
        populations[f"random directions ({name})"] = sens.white_box(part["unit_random_change"], sigma)
        pair_levels[name] = sens.random_pair_level(activation.values, random_pairs, seed)
    summaries = [sens.summarize(values.drop_vars([c for c in values.coords if c != "eps"]), bootstrap, seed) for values in populations.values()]
    result = xr.concat(summaries, dim="population").assign_coords(population=list(populations))
    levels = [pair_levels.get(name, np.nan) for name in populations]
    result["random_pair_level"] = ("population", np.asarray(levels, dtype=float))
    result.attrs = {"one_sd_level": 1.0, "bootstrap": bootstrap}
    return result
