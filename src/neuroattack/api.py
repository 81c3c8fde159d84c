"""The Python entry point: the adversarial sensitivity s~(eps) of a model object's units,
with the engine and the estimator the workflow runs, and Figure 1 of it beside a finished run's.

`sensitivity(model, images, eps)` gives the numbers a `networks` entry of the workflow gives
for the same model, layer, images and master `seed`: the same units drawn, the same images
attacked with the same seeds, the same normalisation and bootstrap.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import yaml
from matplotlib.figure import Figure
from torch import nn

from neuroattack import io
from neuroattack.analysis.sensitivity import random_directions, random_pair_level, summarize, white_box
from neuroattack.artifacts import artifact_path
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import Progress, attack_targets, attacked_stimuli
from neuroattack.config import DIRECTIONS, PENULTIMATE
from neuroattack.figures.sensitivity import figure1
from neuroattack.networks.build import FeatureNetwork, seen_at
from neuroattack.networks.features import ALIVE_SPREAD, select_units
from neuroattack.networks.models import IMAGENET_MEAN, IMAGENET_STD, Architecture
from neuroattack.networks.readouts import UnitResponse, infer, to_tensor
from neuroattack.networks.zoo import DEFAULT_RESOLUTION, ZooNetwork
from neuroattack.runtime import ProgressLog
from neuroattack.runtime import device as default_device
from neuroattack.seeds import stream_seed

# The workflow's embedded default config, in the checkout this package runs from.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
ROUND = 1  # the network units are attacked once, with round 1's seeds (rule attack_units)

Images = torch.Tensor | np.ndarray


@cache
def shipped_config() -> dict[str, Any]:
    """The workflow's default config (config/config.yaml), whose values the API's defaults are."""
    if not SHIPPED_CONFIG.is_file():
        raise FileNotFoundError(
            f"{SHIPPED_CONFIG}: the workflow's default config is not here; install neuroattack from its "
            "repository (pip install -e .) or pass attack=, units= and bootstrap= yourself"
        )
    with SHIPPED_CONFIG.open() as file:
        loaded: dict[str, Any] = yaml.safe_load(file)
    return loaded


def default_attack(**overrides: Any) -> AttackSettings:
    """The workflow's attack settings (the default config's `attack` section), with `overrides`
    (any AttackSettings field, e.g. steps=5)."""
    return AttackSettings.from_config(shipped_config()["attack"], **overrides)


def sensitivity(
    model: nn.Module,
    images: Images,
    eps: float | Sequence[float],
    *,
    layer: str | None = None,
    units: int | Sequence[int] | None = None,
    attacked_images: int | None = None,
    attack: AttackSettings | None = None,
    seed: int = 0,
    name: str | None = None,
    resolution: int = DEFAULT_RESOLUTION,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    bootstrap: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | Progress = True,
) -> xr.Dataset:
    """s~(eps) of `model`'s units at `layer`, with its 95% bootstrap interval, as a workflow's
    `networks` entry of the model gives it (Figure 1's population `name`, and random directions
    of the same norm on it, `random:<name>`).

    model: any torch module (a torchvision or timm model, your own); it is copied, not changed.
        Pixels in [0, 1] are resized to `resolution` and normalised by `mean` and `std` inside
        the attacked network (the entry's `input`), so eps is in the pixels of `images`.
    images: the stimulus set: float in [0, 1] shaped (N, C, H, W), or uint8 shaped (N, H, W, C);
        a tensor or an array. Every image counts in a unit's spread; they are shown as 8-bit
        images (floats are rounded to the nearest of 256 levels), as the attack's are.
    eps: the budgets (in the norm of `attack`), each positive.
    layer: a module name of `model` (`model.named_modules()`); None: the penultimate layer, the
        input of its last linear layer.
    units: how many units to draw among those that vary over the images (the workflow's
        `attack.units_per_network`, its default), or the units' indices.
    attacked_images: how many images are attacked (`attack.images`), drawn as the workflow draws
        them; None: every image.
    attack: the search (default: `default_attack()`, the workflow's).
    seed: the workflow's master `seed`: the units, the attacked images, each image's attack and
        baseline, and the bootstrap draw from its streams (neuroattack.seeds) as in a run.
    bootstrap: resamples of the interval (default: the workflow's `sensitivity.bootstrap`).
    device: where to attack (default: the GPU when one is usable, else the CPU).
    progress: log progress (and draw a bar on a terminal), or a function called with
        (row-restarts done, total).

    Returns a Dataset over `population`: `s_tilde`, `ci_low`, `ci_high`, `n_units`, `n_images`,
    `random_pair_level` (Figure 1's, as a run's sensitivity/sensitivity.nc holds them); and per
    (unit, image, eps, direction) the achieved `change`, `random_change` and `delta_norm`, with
    each unit's `clean` response and its spread `sigma` over the images.
    """
    pixels = _pixels(images)
    eps_grid = _eps_grid(eps)
    settings = (attack or default_attack()).white_box()
    if pixels.shape[-1] != len(mean) or len(mean) != len(std):
        raise ValueError(f"images: {pixels.shape[-1]} channels, but mean and std have {len(mean)} and {len(std)}")
    name = name or type(model).__name__
    where = torch.device(device) if device is not None else default_device()
    network = attacked_network(model, layer, resolution, mean, std)
    response = UnitResponse(network)  # its copy made on the CPU, as the workflow's (BatchNorm folded there)
    network.to(where)
    stimuli = xr.Dataset(
        {"pixels": (("stimulus_id", "y", "x", "channel"), pixels)},
        coords={"stimulus_id": [f"image{index:05d}" for index in range(len(pixels))]},
    )
    features = xr.Dataset(
        {"activation": (("stimulus_id", "unit"), infer(network.features, pixels, where))},
        coords={"stimulus_id": stimuli["stimulus_id"].values},
        attrs={"network": name},
    )
    chosen = _units(features, units, seed)
    attacked = attacked_stimuli(stimuli, _attacked_count(attacked_images, len(pixels)), _seed(seed, "attacked_images"))
    per_image = len(chosen) * len(eps_grid) * len(DIRECTIONS) * settings.restarts
    report = _progress(progress, f"attack on {len(attacked)} images of {name}")
    results = []
    for index, stimulus_id in enumerate(attacked):

        def tracked(done: float, _: int, before: int = index * per_image) -> None:
            if report is not None:
                report(before + done, per_image * len(attacked))

        image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(where)
        starts, baseline = _seed(seed, "attack_starts", ROUND, index), _seed(seed, "model_baseline", ROUND, index)
        results.append(
            attack_targets(response, image, chosen, eps_grid, settings, starts, tracked, baseline_seed=baseline)
        )
    changes = _changes(results, chosen, attacked, eps_grid)
    summary = _summarised(changes, features["activation"].sel(unit=chosen), name, bootstrap, seed)
    summary.attrs["layer"] = layer or PENULTIMATE
    return summary


def _identity(model: nn.Module) -> nn.Module:
    """A `factory` (networks.zoo) whose model is the one it is handed."""
    return model


def attacked_network(
    model: nn.Module, layer: str | None, resolution: int, mean: Sequence[float], std: Sequence[float]
) -> FeatureNetwork:
    """A copy of `model`, on the CPU, as the workflow attacks a user's model: behind the zoo's
    resize and normalisation (a `ZooNetwork`, built by the zoo's factory path handed the copy),
    in eval mode without weight gradients, seen at `layer` (None: the penultimate)."""
    if resolution < 1:
        raise ValueError(f"resolution {resolution}: give the model's input size in pixels (a positive number)")
    arch = Architecture(
        name="factory",
        num_classes=0,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        extra={
            "model": f"{__name__}:{_identity.__name__}",
            "kwargs": {"model": copy.deepcopy(model).cpu()},
            "resolution": resolution,
        },
    )
    return seen_at(ZooNetwork(arch).eval().requires_grad_(False), layer, "layer")


def _pixels(images: Images) -> np.ndarray:
    """uint8 (N, H, W, C) from float (N, C, H, W) in [0, 1] or uint8 (N, H, W, C)."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"images: shape {array.shape}; give (N, C, H, W) floats in [0, 1] or (N, H, W, C) uint8")
    if len(array) < 2:
        raise ValueError(f"images: {len(array)} image; a unit's spread over the images needs at least 2")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"images: dtype {array.dtype}; give floats in [0, 1] (N, C, H, W) or uint8 (N, H, W, C)")
    if not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
        raise ValueError(
            f"images: values from {np.nanmin(array):g} to {np.nanmax(array):g}; floats must lie in [0, 1] "
            "(divide 8-bit pixels by 255, or pass them as uint8 (N, H, W, C))"
        )
    return np.ascontiguousarray(np.round(array * 255.0).astype(np.uint8).transpose(0, 2, 3, 1))


def _eps_grid(eps: float | Sequence[float]) -> list[float]:
    grid = [float(e) for e in (eps if isinstance(eps, Sequence) else [eps])]
    if not grid or not all(np.isfinite(e) and e > 0 for e in grid):
        raise ValueError(f"eps: {list(grid)}; give one or more positive budgets")
    return grid


def _seed(master: int, stream: str, *keys: int) -> int:
    """A stream's seed in a run whose config's `seed` is `master` (seeds.config_seed)."""
    return stream_seed(int(master), stream, *keys)


def _units(features: xr.Dataset, units: int | Sequence[int] | None, seed: int) -> np.ndarray:
    """The attacked units: drawn as the workflow draws them, or the given indices (each varying)."""
    spread = features["activation"].std("stimulus_id").values
    if units is None or isinstance(units, int | np.integer):
        count = int(shipped_config()["attack"]["units_per_network"] if units is None else units)
        varying = int((spread > ALIVE_SPREAD).sum())
        if not 1 <= count <= varying:
            raise ValueError(f"units: {count} requested, but {varying} units of the layer vary over the images")
        return select_units(features, count, _seed(seed, "units"))
    chosen = np.asarray(units, dtype=int)
    outside = [int(u) for u in chosen if not 0 <= u < len(spread)]
    flat = [int(u) for u in chosen if u not in outside and spread[u] <= ALIVE_SPREAD]
    if chosen.ndim != 1 or len(chosen) == 0 or outside or flat or len(set(chosen.tolist())) != len(chosen):
        raise ValueError(
            f"units: {chosen.tolist()}; give distinct indices of units in [0, {len(spread)}) that vary over the images"
            + (f" ({outside} are outside)" if outside else "")
            + (f" ({flat} do not vary: their spread is 0)" if flat else "")
        )
    return chosen


def _attacked_count(attacked_images: int | None, available: int) -> int:
    count = available if attacked_images is None else int(attacked_images)
    if not 1 <= count <= available:
        raise ValueError(f"attacked_images: {attacked_images}; give a number from 1 to the {available} images")
    return count


def _progress(progress: bool | Progress, what: str) -> Progress | None:
    if callable(progress):
        return progress
    return ProgressLog(what) if progress else None


def _changes(
    results: Sequence[Mapping[str, np.ndarray]], chosen: np.ndarray, attacked: Sequence[str], eps_grid: Sequence[float]
) -> xr.Dataset:
    """Every (image, unit, eps, direction) of the attacks, as the units' attack files hold them."""
    cube = ("image", "unit", "eps", "direction")
    return xr.Dataset(
        {
            "change": (cube, np.stack([r["change"] for r in results])),
            "random_change": (cube, np.stack([r["random_change"] for r in results])),
            "delta_norm": (cube, np.stack([r["delta_norm"] for r in results])),
            "clean": (("image", "unit"), np.stack([r["clean"] for r in results])),
        },
        coords={
            "image": list(attacked),
            "unit_index": ("unit", chosen),
            "eps": eps_grid,
            "direction": list(DIRECTIONS),
        },
    )


def _summarised(
    changes: xr.Dataset, activation: xr.DataArray, name: str, bootstrap: int | None, seed: int
) -> xr.Dataset:
    """s~(eps) of the units and of random directions on them, normalised and summarised as
    the workflow's sensitivity.estimate_populations does for a network."""
    resamples = int(shipped_config()["sensitivity"]["bootstrap"]) if bootstrap is None else bootstrap
    sigma = xr.DataArray(activation.std("stimulus_id", ddof=1).values, dims="unit")
    bootstrap_seed = _seed(seed, "bootstrap")
    summaries = []
    for population, variable in ((name, "change"), (random_directions(name), "random_change")):
        normalized = white_box(changes[variable], sigma)
        normalized = normalized.drop_vars([c for c in normalized.coords if c != "eps"])
        summaries.append(summarize(normalized, resamples, bootstrap_seed).expand_dims(population=[population]))
    summary = xr.concat(summaries, dim="population")
    level = random_pair_level(activation.values, _random_pairs(), bootstrap_seed)
    summary["random_pair_level"] = ("population", np.array([level, np.nan]))
    result = xr.merge([summary, changes.transpose("unit", "image", "eps", "direction")])
    result["sigma"] = sigma
    result.attrs = {"one_sd_level": 1.0, "bootstrap": resamples, "seed": seed}
    return result


def _random_pairs() -> int:
    return int(shipped_config()["sensitivity"]["random_pairs"])


def load_run(results: str | os.PathLike[str] = "results") -> xr.Dataset:
    """A finished run's Figure 1 populations (its sensitivity/sensitivity.nc), `results` being
    the run's results folder (the config's `results`)."""
    path = Path(artifact_path(os.fspath(results), "sensitivity"))
    if not path.is_file():
        raise FileNotFoundError(f"results: {path} does not exist; is {results} a finished run's results folder?")
    return io.read_dataset(path, "sensitivity")


def plot_sensitivity(*sources: xr.Dataset | str | os.PathLike[str]) -> Figure:
    """Figure 1 (s~(eps) with 95% intervals and the reference levels) of every source side by
    side: results of `sensitivity`, runs' datasets (`load_run`) or runs' results folders."""
    if not sources:
        raise ValueError("sources: give at least one result of sensitivity() or a run")
    datasets = [source if isinstance(source, xr.Dataset) else load_run(source) for source in sources]
    fields = ["s_tilde", "ci_low", "ci_high", "random_pair_level"]
    names = [str(p) for dataset in datasets for p in dataset["population"].values]
    repeated = sorted({p for p in names if names.count(p) > 1})
    if repeated:
        raise ValueError(f"sources: populations {repeated} appear in more than one; name them apart (name=...)")
    combined = xr.concat([d[fields] for d in datasets], dim="population", join="outer", coords="minimal")
    figure, _ = figure1(combined)
    return figure
