"""Untargeted attacks on one clean image, at every eps, in both directions, with the
random-direction baseline: a round's attack on every site's predicted response
(`attack_sites`, the same function in every round of the loop), the white-box attack on
sampled units of every network (`attack_units`), and, for validation in silico, the
simulated brain's sites attacked directly (`white_box_changes`).

One attack file per clean image and round (a natural GPU batch), and one per clean image for
the network units; everything downstream reads the achieved changes from these files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import xarray as xr
from torch import nn

from neuroattack.attacks.engine import pgd_attack, random_direction_baseline
from neuroattack.attacks.settings import AttackSettings, attack_grid
from neuroattack.brain.simulated import expected_responses
from neuroattack.brain.sitemodels import ensemble_response
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import features_layer, select_units
from neuroattack.networks.readouts import UnitResponse, infer, to_tensor


def attacked_stimuli(stimuli: xr.Dataset, count: int, seed: int) -> list[str]:
    """The clean images to attack: the first `count` of a seeded shuffle of the stimulus set,
    so that one more image adds one attack and changes none of the others."""
    ids = stimuli["stimulus_id"].values
    if count > len(ids):
        raise ValueError(f"attack.images = {count} but the stimulus set has only {len(ids)} images; lower it")
    return [str(s) for s in np.random.default_rng(seed).permutation(ids)[:count]]


Progress = Callable[[float, int], None]  # (row-restarts done, total)
# (every site's response, the clean image (1, C, H, W), its stimulus_id, the sites' neuroid_ids)
# -> the response attacked
Refine = Callable[[nn.Module, torch.Tensor, str, list[str]], nn.Module]


def attack_targets(
    response: nn.Module,
    image: torch.Tensor,
    targets: np.ndarray,
    eps_grid: Sequence[float],
    settings: AttackSettings,
    seed: int,
    progress: Progress | None = None,
    warm_start: torch.Tensor | None = None,
    baseline_seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Attack every (target, eps, direction) of one image (1, C, H, W); arrays shaped
    (target, eps, direction), `clean` (target,), `perturbed` uint8 (target, eps, direction, y, x, channel).
    Runs where `image` lives (the response module is moved there). `warm_start`: one
    perturbation per row in that order (pgd_attack's), where restart 0 begins. `baseline_seed`
    draws the random-direction baseline (`random_change`; NaN where None: not measured)."""
    response = response.to(image.device)
    cases = image.expand(len(targets), -1, -1, -1)
    grid = attack_grid(cases, torch.as_tensor(targets, dtype=torch.long), eps_grid, DIRECTION_SIGNS)
    result = pgd_attack(
        response, grid.images, grid.target, grid.eps, grid.sign, settings, seed, progress, warm_start=warm_start
    )
    if baseline_seed is None:
        random_change = np.full(grid.shape, np.nan)
    else:
        baseline = random_direction_baseline(response, grid.images, grid.target, grid.eps, baseline_seed, settings.norm)
        random_change = grid.to_host(baseline.change)
    return {
        "clean": grid.to_host(result.clean)[:, 0, 0],
        "change": grid.to_host(result.change),
        "delta_norm": grid.to_host(result.delta_norm),
        "random_change": random_change,
        "perturbed": result.perturbed.permute(0, 2, 3, 1).cpu().numpy().reshape(*grid.shape, *image.shape[2:], -1),
        "passes": np.array([result.forward_passes, result.backward_passes]),
    }


def result_block(kind: str, results: Mapping[str, np.ndarray], coords: Mapping[str, object]) -> xr.Dataset:
    """One population's achieved changes: `{kind}_clean`, `{kind}_change`, ... over dim `kind`."""
    cube = (kind, "eps", "direction")
    return xr.Dataset(
        {
            f"{kind}_clean": (kind, results["clean"]),
            f"{kind}_change": (cube, results["change"]),
            f"{kind}_delta_norm": (cube, results["delta_norm"]),
            f"{kind}_random_change": (cube, results["random_change"]),
        },
        coords=dict(coords),
    )


def attack_sites(
    stimulus_id: str,
    stimuli: xr.Dataset,
    surrogates: Sequence[xr.Dataset],
    site_models: Sequence[xr.Dataset],
    settings: AttackSettings,
    eps_grid: Sequence[float],
    seed: int,
    baseline_seed: int,
    previous: xr.Dataset | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
    refine: Refine | None = None,
) -> xr.Dataset:
    """One round's attack on one clean image, the same in every round: every site's predicted
    response, the mean over the ensemble members (surrogate network k with its site models
    site_models[k]; one member: the single surrogate), at every eps in both directions, with
    the random-direction baseline on it (`baseline_seed`). The transfer options of `settings`
    shape these (black-box) attacks. With `previous` (the earlier round's attack file of the
    image), each row's first restart starts from that round's best perturbation of the row.
    With `refine`, the sites' response attacked is refine(response, image, stimulus_id, sites)
    (loop.recorded_gradient: corrected by what earlier rounds recorded)."""
    image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(device or torch.device("cpu"))
    neuroid_id = site_models[0]["neuroid_id"].values
    warm_start = None if previous is None else warm_start_of(previous, stimulus_id, neuroid_id, eps_grid, image)
    response = ensemble_response(surrogates, site_models)
    if refine is not None:
        response = refine(response, image, stimulus_id, neuroid_id.astype(str).tolist())
    sites = attack_targets(
        response,
        image,
        np.arange(site_models[0].sizes["site"]),
        eps_grid,
        settings,
        seed,
        progress,
        warm_start=warm_start,
        baseline_seed=baseline_seed,
    )
    coords = {"eps": list(eps_grid), "direction": list(DIRECTIONS), "neuroid_id": ("site", neuroid_id)}
    ds = result_block("site", sites, coords)
    ds["perturbed"] = (("site", "eps", "direction", "y", "x", "channel"), sites["perturbed"])
    ds.attrs = {
        "stimulus_id": stimulus_id,
        "attack_seed": seed,
        "ensemble": [str(m.attrs.get("surrogate_network", "")) for m in site_models],
        "warm_started": int(previous is not None),
        "refined_by_recordings": int(refine is not None),
        **_attack_attrs(sites, len(eps_grid), settings, image.device),
    }
    return ds


def attack_round(
    stimulus_ids: Sequence[str],
    stimuli: xr.Dataset,
    surrogates: Sequence[xr.Dataset],
    site_models: Sequence[xr.Dataset],
    settings: AttackSettings,
    eps_grid: Sequence[float],
    seeds: Sequence[tuple[int, int]],
    previous: Sequence[xr.Dataset] | None = None,
    device: torch.device | None = None,
    workers: int = 1,
    progress: Callable[[str], Progress | None] | None = None,
    refine: Refine | None = None,
) -> Iterator[xr.Dataset]:
    """A round's attack on every clean image (`attack_sites` per image; image i with
    seeds[i] = (attack starts, model baseline) and, with `previous`, the earlier round's
    attack file previous[i]), yielded in image order as each is done. Images run `workers` at
    a time in threads of this process, each on one torch thread on the CPU (also when one image
    is left): the same numbers whatever the job's threads or images, in one start-up."""
    if len(seeds) != len(stimulus_ids) or (previous is not None and len(previous) != len(stimulus_ids)):
        raise ValueError(f"{len(stimulus_ids)} images but {len(seeds)} seed pairs; give one per image")

    def one(position: int) -> xr.Dataset:
        stimulus_id = stimulus_ids[position]
        return attack_sites(
            stimulus_id,
            stimuli,
            surrogates,
            site_models,
            settings,
            eps_grid,
            seed=seeds[position][0],
            baseline_seed=seeds[position][1],
            previous=None if previous is None else previous[position],
            device=device,
            progress=None if progress is None else progress(stimulus_id),
            refine=refine,
        )

    workers = max(1, min(workers, len(stimulus_ids)))
    threads = torch.get_num_threads()
    if device is None or device.type == "cpu":
        # one torch thread per image, however many images the job has left: a CPU kernel's
        # result can depend on how many threads split its sums
        torch.set_num_threads(1)
    try:
        if workers == 1:
            yield from map(one, range(len(stimulus_ids)))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                yield from pool.map(one, range(len(stimulus_ids)))
    finally:
        torch.set_num_threads(threads)


def warm_start_of(
    previous: xr.Dataset, stimulus_id: str, neuroid_id: np.ndarray, eps_grid: Sequence[float], image: torch.Tensor
) -> torch.Tensor:
    """An earlier round's best perturbation of every (site, eps, direction) row of one clean
    `image` (1, C, H, W), in attack_targets' row order, in [0, 1] pixel units."""
    if str(previous.attrs["stimulus_id"]) != stimulus_id:
        raise ValueError(
            f"the warm start comes from an attack on {previous.attrs['stimulus_id']}, not on {stimulus_id}"
        )
    same = {
        "neuroid_id": previous["neuroid_id"].values.tolist() == np.asarray(neuroid_id).tolist(),
        # eps as the file stores it (float32): compared at that precision
        "eps": np.array_equal(previous["eps"].values, np.asarray(eps_grid, dtype=previous["eps"].dtype)),
        "direction": previous["direction"].values.tolist() == list(DIRECTIONS),
    }
    different = [name for name, equal in same.items() if not equal]
    if different:
        raise ValueError(
            f"the earlier round's attack has other {', '.join(different)} values than this round's; rerun it"
        )
    shown = previous["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values
    return to_tensor(shown.reshape(-1, *shown.shape[3:])).to(image.device) - image


def attack_units(
    stimulus_id: str,
    stimuli: xr.Dataset,
    networks: Mapping[str, xr.Dataset],
    features: Mapping[str, xr.Dataset],
    settings: AttackSettings,
    eps_grid: Sequence[float],
    units_per_network: int,
    seed: int,
    unit_seed: int,
    baseline_seed: int,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> xr.Dataset:
    """The white-box attack on one clean image of sampled units of every network at every layer
    `features` has (keyed by network, or depth view: its attrs name the network).
    `unit_seed` picks the units (the same for every image); `seed` the attack's starts;
    `baseline_seed` the random directions of the model-side baseline.
    `progress(done, total)` hears how many row-restarts of the whole image are done."""
    image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(device or torch.device("cpu"))
    grid_coords = {"eps": list(eps_grid), "direction": list(DIRECTIONS)}
    units = {name: select_units(features[name], units_per_network, unit_seed) for name in features}
    per_target = len(eps_grid) * len(DIRECTIONS) * settings.restarts
    total = per_target * sum(len(chosen) for chosen in units.values())
    offset = [0]

    def tracked(done: float, _: int) -> None:
        if progress is not None:
            progress(offset[0] + done, total)

    blocks, results = [], {}
    for name, chosen in units.items():  # every network, then every depth view (attack.layers)
        weights = networks[str(features[name].attrs.get("network", name))]
        response = UnitResponse(network_from_dataset(weights, name, features_layer(features[name])))
        results = attack_targets(
            response, image, chosen, eps_grid, settings.white_box(), seed, tracked, baseline_seed=baseline_seed
        )
        offset[0] += per_target * len(chosen)
        coords = {**grid_coords, "network": ("unit", [name] * len(chosen)), "unit_index": ("unit", chosen)}
        blocks.append(result_block("unit", results, coords))
    ds = xr.concat(blocks, dim="unit") if blocks else xr.Dataset(coords=grid_coords)
    ds.attrs = {"stimulus_id": stimulus_id, **_attack_attrs(results, len(eps_grid), settings.white_box(), image.device)}
    return ds


def _attack_attrs(
    results: Mapping[str, np.ndarray], eps_count: int, settings: AttackSettings, device: torch.device
) -> dict[str, object]:
    """What an attack file records of how it was made: passes per row, rows per target, settings."""
    passes = results.get("passes", np.zeros(2, dtype=int))
    return {
        "forward_passes_per_row": int(passes[0]),
        "backward_passes_per_row": int(passes[1]),
        "rows_per_target": eps_count * len(DIRECTIONS),
        **{f"attack_{k}": v for k, v in vars(settings).items()},
        "attack_search_precision": settings.search_precision(device),
    }


def white_box_changes(
    brain: xr.Dataset,
    stimuli: xr.Dataset,
    image_ids: Sequence[str],
    settings: AttackSettings,
    eps_grid: list[float],
    seed: int,
    device: torch.device | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> xr.Dataset:
    """Attack the simulated sites directly (validation only: reads the brain's weights):
    `change` (image, site, eps, direction), and each site's `sigma` over the stimuli."""
    device = device or torch.device("cpu")
    model = expected_responses(brain).to(device)
    sites = np.arange(model.weight.shape[0])
    sigma = infer(model.all_sites, stimuli["pixels"].values, device).astype(np.float64).std(axis=0, ddof=1)
    changes = []
    per_image = len(sites) * len(eps_grid) * len(DIRECTIONS) * settings.restarts
    total = per_image * len(image_ids)
    for number, sid in enumerate(image_ids):
        image = to_tensor(stimuli["pixels"].sel(stimulus_id=[sid]).values).to(device)

        def tracked(done: float, _: int, before: int = number * per_image) -> None:
            if progress is not None:
                progress(before + done, total)

        changes.append(attack_targets(model, image, sites, eps_grid, settings.white_box(), seed, tracked)["change"])
    return xr.Dataset(
        {"change": (("image", "site", "eps", "direction"), np.stack(changes)), "sigma": ("site", sigma)},
        coords={"image": list(image_ids), "eps": eps_grid, "direction": list(DIRECTIONS)},
    )
