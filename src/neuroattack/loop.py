"""The closed loop over recording rounds.

Round 1 attacks every site's surrogate fitted on the clean recordings. Each round shows
the animal (or the simulated brain) the attacked clean images, their perturbed images,
and random-direction images of every eps on the same clean images (the model-free
baseline), and records them. Round r's site models are refitted on the clean recordings
plus the recordings of every round before r, and attack the same clean images again.

Per round, sensitivity is estimated for: the brain's sign-corrected black-box change
(the sign from the site models that made the perturbation, fitted before the round),
the recorded random-direction baseline (noise-corrected, see `random_baseline`), the
surrogate's own prediction and, in silico, the brain's white-box truth. What the site models
(and with `loop.refit: network` the surrogate networks) are refitted on between rounds is
in `neuroattack.refit`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
import xarray as xr

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    SURROGATE,
    random_directions,
    site_changes,
    site_sigma,
    summarize,
    summarize_populations,
)
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_targets, result_block
from neuroattack.brain.rig import perturbed_index, responses_to_attacks
from neuroattack.brain.sitemodels import ensemble_response
from neuroattack.data.stimuli import make_stimuli
from neuroattack.geometry import LEVELS, PROJECTION_SLACK, clamp_to_box, norm_named
from neuroattack.networks.readouts import to_tensor

RECORDED_RANDOM = random_directions("brain")  # the recorded random-direction baseline


def random_direction_images(pixels: np.ndarray, eps_grid: Sequence[float], seed: int, norm: str) -> np.ndarray:
    """One random direction of each eps per clean image, quantised to 8 bits like an attack:
    uint8 (image, eps, y, x, channel) from uint8 (image, y, x, channel)."""
    geometry = norm_named(norm)
    images = to_tensor(pixels).repeat_interleave(len(eps_grid), dim=0)
    eps = torch.as_tensor(np.tile(np.asarray(eps_grid, dtype=np.float32), len(pixels)))
    generator = torch.Generator().manual_seed(seed)
    direction = geometry.random_direction(images.shape, generator)
    delta = clamp_to_box(images, direction * (eps * (1 - PROJECTION_SLACK)).view(-1, 1, 1, 1))
    levels, _ = geometry.quantize(images, delta, eps)
    shown = torch.round(levels).clamp(0, LEVELS).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return shown.reshape(len(pixels), len(eps_grid), *shown.shape[1:])


def round_stimulus_set(
    stimuli: xr.Dataset, attacks: Sequence[xr.Dataset], round_number: int, seed: int, norm: str
) -> xr.Dataset:
    """The images shown in one round: the attacked clean images, every site's perturbed images
    (rig.perturbed_index's order) and one random-direction image per (clean image, eps).
    Perturbed and random ids carry the round (`round2__...`), so rounds never share an id."""
    index = perturbed_index(attacks)
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    eps_grid = attacks[0]["eps"].values.astype(float).tolist()
    n_clean = len(clean_ids)
    prefix = f"round{round_number}__"
    perturbed_ids = [prefix + s for s in index["stimulus_id"].values[n_clean:].tolist()]
    random_ids = [f"{prefix}{c}__random__eps{e:g}" for c in clean_ids for e in eps_grid]
    clean_pixels = stimuli["pixels"].sel(stimulus_id=clean_ids).values
    perturbed = [a["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values for a in attacks]
    random = random_direction_images(clean_pixels, eps_grid, seed, norm)
    pixels = np.concatenate(
        [clean_pixels, *(p.reshape(-1, *p.shape[3:]) for p in perturbed), random.reshape(-1, *random.shape[2:])]
    )
    n_random = len(random_ids)
    categories = index["category"].values.tolist() + ["random"] * n_random
    shown = make_stimuli(pixels, clean_ids + perturbed_ids + random_ids, categories)
    category_of = dict(zip(stimuli["stimulus_id"].values.tolist(), stimuli["category"].values.tolist(), strict=True))
    clean_of = index["clean_stimulus_id"].values.tolist() + [c for c in clean_ids for _ in eps_grid]

    def extended(name: str, fill: object) -> np.ndarray:
        return np.asarray(index[name].values.tolist() + [fill] * n_random)

    return shown.assign_coords(
        clean_stimulus_id=("stimulus_id", np.asarray(clean_of, dtype=str)),
        clean_category=("stimulus_id", np.asarray([category_of[c] for c in clean_of], dtype=str)),
        target_neuroid_id=("stimulus_id", extended("target_neuroid_id", "").astype(str)),
        eps=("stimulus_id", np.concatenate([index["eps"].values, np.tile(eps_grid, n_clean)]).astype(float)),
        direction=("stimulus_id", extended("direction", "").astype(str)),
    ).assign_attrs(round=round_number)


def trial_statistics(recordings: xr.Dataset, stimulus_ids: Sequence[str], neuroid_id: Sequence[str]) -> xr.Dataset:
    """Per (stimulus_id, site): `mean`, unbiased trial variance `variance` and `count` of the
    valid (finite) trials, sites in the order of `neuroid_id`."""
    response = recordings["response"]
    grouped = response.groupby("stimulus_id")
    stats = xr.Dataset(
        {
            "mean": grouped.mean("presentation"),
            "variance": grouped.var("presentation", ddof=1),
            "count": response.notnull().groupby("stimulus_id").sum("presentation"),
        }
    )
    positions = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    missing = [str(n) for n in neuroid_id if str(n) not in positions]
    if missing:
        raise KeyError(f"the round's recordings lack sites the site models were fitted for: {missing[:5]}")
    stats = stats.isel(site=[positions[str(n)] for n in neuroid_id])
    return stats.sel(stimulus_id=list(stimulus_ids)).transpose("stimulus_id", "site")


def noise_corrected_squared_change(
    perturbed_mean: np.ndarray,
    perturbed_variance: np.ndarray,
    perturbed_count: np.ndarray,
    clean_mean: np.ndarray,
    clean_variance: np.ndarray,
    clean_count: np.ndarray,
) -> np.ndarray:
    """An unbiased estimate of the squared change of the expected response, (r(x+d) - r(x))^2,
    from trial means and unbiased trial variances of independent trials:
    (mean_p - mean_c)^2 - var_p / n_p - var_c / n_c. The naive (mean_p - mean_c)^2 exceeds it
    by the noise variance of the difference in expectation. Negative values are kept (clipping
    them would bias the mean)."""
    difference = np.asarray(perturbed_mean, dtype=np.float64) - np.asarray(clean_mean, dtype=np.float64)
    noise = np.asarray(perturbed_variance, dtype=np.float64) / perturbed_count + np.asarray(
        clean_variance, dtype=np.float64
    ) / np.asarray(clean_count, dtype=np.float64)
    squared: np.ndarray = difference**2 - noise
    return squared


def round_responses(
    shown: xr.Dataset, recordings: xr.Dataset, attacks: Sequence[xr.Dataset], brain: xr.Dataset | None = None
) -> xr.Dataset:
    """A round's recordings matched back to its attacks (rig.responses_to_attacks), plus the
    random-direction baseline: `random_recorded_change` and its unbiased squared change
    `random_squared_change` (site, image, eps); and every site's change under every
    perturbation (`every_site_changes`: off-target specificity), with a simulated `brain`'s
    noise-free truth beside it."""
    attacked = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values != "random"))
    responses = responses_to_attacks(attacked, recordings, attacks)
    random = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values == "random"))
    clean_ids = responses["image"].values.tolist()
    eps_grid = responses["eps"].values
    recorded_ids = set(recordings["stimulus_id"].values.tolist())
    missing = [s for s in random["stimulus_id"].values.tolist() if s not in recorded_ids]
    if missing:
        raise KeyError(
            f"recordings lack {len(missing)} of the round's random-direction images, e.g. {missing[:3]}; "
            "record every image of the round's stimulus set"
        )
    neuroids = responses["neuroid_id"].values.tolist()
    clean = trial_statistics(recordings, clean_ids, neuroids)
    shape = (len(clean_ids), len(eps_grid), len(neuroids))
    perturbed = trial_statistics(recordings, random["stimulus_id"].values.tolist(), neuroids)

    def per_image(stats: xr.Dataset, name: str) -> np.ndarray:
        values: np.ndarray = stats[name].values.reshape(shape).transpose(2, 0, 1)  # (site, image, eps)
        return values

    def repeated(name: str) -> np.ndarray:
        values: np.ndarray = np.repeat(clean[name].values.T[:, :, None], len(eps_grid), axis=2)
        return values

    dims = ("site", "image", "eps")
    responses["random_recorded_change"] = (dims, per_image(perturbed, "mean") - repeated("mean"))
    responses["random_squared_change"] = (
        dims,
        noise_corrected_squared_change(
            per_image(perturbed, "mean"),
            per_image(perturbed, "variance"),
            per_image(perturbed, "count"),
            repeated("mean"),
            repeated("variance"),
            repeated("count"),
        ),
    )
    responses = responses.merge(every_site_changes(attacked, recordings, responses, brain))
    responses.attrs["round"] = int(shown.attrs["round"])
    return responses


EVERY_SITE_DIMS = ("site", "image", "eps", "direction", "recorded_site")


def every_site_changes(
    attacked: xr.Dataset, recordings: xr.Dataset, responses: xr.Dataset, brain: xr.Dataset | None = None
) -> xr.Dataset:
    """Every recorded site's change under every perturbation aimed at one site, EVERY_SITE_DIMS
    (`site`: the target, `recorded_site`: the site that changed, in the same order):
    `every_site_change` (trial means, perturbed - clean) and its unbiased squared change
    `every_site_squared_change` (`noise_corrected_squared_change`); with a simulated `brain`,
    `every_site_true_change`, the change of its noise-free expected responses."""
    neuroids = responses["neuroid_id"].values.astype(str).tolist()
    images, eps_grid, directions = (responses[name].values for name in ("image", "eps", "direction"))
    perturbed_ids = attacked["stimulus_id"].values[len(images) :].tolist()  # (image, site, eps, direction) order
    shape = (len(images), len(neuroids), len(eps_grid), len(directions), len(neuroids))
    order = (1, 0, 2, 3, 4)  # to (site, image, eps, direction, recorded_site)
    clean = trial_statistics(recordings, images.tolist(), neuroids)
    perturbed = trial_statistics(recordings, perturbed_ids, neuroids)

    def shaped(values: np.ndarray) -> np.ndarray:
        reshaped: np.ndarray = values.reshape(shape).transpose(order)
        return reshaped

    def of_clean(name: str) -> np.ndarray:  # the clean image's statistics under every perturbation of it
        values = clean[name].values[:, None, None, None, :]
        return np.broadcast_to(values, shape).transpose(order)

    changes = {
        "every_site_change": shaped(perturbed["mean"].values) - of_clean("mean"),
        "every_site_squared_change": noise_corrected_squared_change(
            *(shaped(perturbed[name].values) for name in ("mean", "variance", "count")),
            *(of_clean(name) for name in ("mean", "variance", "count")),
        ),
    }
    if brain is not None:
        from neuroattack.brain.simulated import expected_responses
        from neuroattack.networks.readouts import infer

        columns = [brain["neuroid_id"].values.astype(str).tolist().index(n) for n in neuroids]
        expected = infer(expected_responses(brain).all_sites, attacked["pixels"].values)[:, columns]
        true_clean = expected[: len(images)][:, None, None, None, :]
        changes["every_site_true_change"] = (expected[len(images) :].reshape(shape) - true_clean).transpose(order)
    return xr.Dataset({name: (EVERY_SITE_DIMS, values.astype(np.float32)) for name, values in changes.items()})


def random_baseline(squared_change: xr.DataArray, sigma: xr.DataArray, bootstrap: int, seed: int) -> xr.Dataset:
    """The recorded model-free baseline on the s~ scale: the root of the mean over sites and
    images of the unbiased squared normalised change (sqrt(E[dr^2]) / sigma). Its square is
    unbiased; as a root mean square it is at least the mean |dr| / sigma of the same
    changes, so a guided estimate above it beats the mean-|dr| baseline too."""
    summary = summarize((squared_change / sigma**2).rename(site="unit"), bootstrap, seed)
    for name in ("s_tilde", "ci_low", "ci_high"):
        summary[name] = np.sqrt(summary[name].clip(min=0.0))
    return summary


def round_sensitivity(
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset,
    recordings: xr.Dataset,
    white_box_changes: xr.Dataset | None,
    bootstrap: int,
    seed: int,
) -> xr.Dataset:
    """s~(eps) with bootstrap CIs of one round (figure 6), populations: the brain's black-box
    estimate, the recorded random-direction baseline, the surrogate's prediction, and (in
    silico) the brain's white-box truth; the first and the last two are `site_changes`, as in
    figure 1, so the last round's values equal figure 1's."""
    changes = site_changes(attacks, responses, recordings, white_box_changes)
    summaries = summarize_populations(changes, bootstrap, seed)
    squared = responses["random_squared_change"]
    recorded_random = random_baseline(
        squared.drop_vars([c for c in squared.coords if c != "eps"]),
        site_sigma(recordings, attacks[0]["neuroid_id"].values),
        bootstrap,
        seed,
    )
    summaries = xr.concat([summaries, recorded_random.expand_dims(population=[RECORDED_RANDOM])], dim="population")
    order = [BRAIN_BLACK_BOX, RECORDED_RANDOM, SURROGATE, BRAIN_WHITE_BOX]
    result = summaries.sel(population=[name for name in order if name in summaries["population"].values])
    result.attrs = {"round": int(responses.attrs.get("round", 0)), "bootstrap": bootstrap}
    return result


def attack_sites_again(
    first_round: xr.Dataset,
    stimuli: xr.Dataset,
    surrogates: Sequence[xr.Dataset],
    models: Sequence[xr.Dataset],
    settings: AttackSettings,
    seed: int,
    baseline_seed: int,
    previous: xr.Dataset | None = None,
    device: torch.device | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> xr.Dataset:
    """A round's attack on one clean image: every site's predicted response, the mean over
    the ensemble members (surrogate network k with its site models models[k]; one member:
    the single surrogate). With `previous` (the earlier round's attack file of the image),
    each row's first restart starts from that round's best perturbation of the row. The
    network units' results (which no round changes) are round 1's (`first_round`)."""
    stimulus_id = str(first_round.attrs["stimulus_id"])
    image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(device or torch.device("cpu"))
    eps_grid = first_round["eps"].values.astype(float).tolist()
    neuroid_id = models[0]["neuroid_id"].values
    warm_start = None if previous is None else warm_start_of(previous, first_round, neuroid_id, image)
    sites = attack_targets(
        ensemble_response(surrogates, models),
        image,
        np.arange(models[0].sizes["site"]),
        eps_grid,
        settings,
        seed,
        progress,
        warm_start=warm_start,
        baseline_seed=baseline_seed,
    )
    coords = {
        "eps": eps_grid,
        "direction": first_round["direction"].values,
        "neuroid_id": ("site", neuroid_id),
    }
    ds = result_block("site", sites, coords)
    ds["perturbed"] = (("site", "eps", "direction", "y", "x", "channel"), sites["perturbed"])
    units = [name for name in first_round.data_vars if str(name).startswith("unit_")]
    ds = ds.merge(first_round[units])
    ds.attrs = {
        **first_round.attrs,
        "attack_seed": seed,
        "ensemble": [str(m.attrs.get("surrogate_network", "")) for m in models],
        "warm_started": int(previous is not None),
    }
    return ds


def attack_round(
    first_rounds: Sequence[xr.Dataset],
    stimuli: xr.Dataset,
    surrogates: Sequence[xr.Dataset],
    models: Sequence[xr.Dataset],
    settings: AttackSettings,
    seeds: Sequence[tuple[int, int]],
    previous: Sequence[xr.Dataset] | None = None,
    device: torch.device | None = None,
    workers: int = 1,
    progress: Callable[[str], Callable[[float, int], None] | None] | None = None,
) -> Iterator[xr.Dataset]:
    """A round's attack on every clean image (attack_sites_again per image; image i with
    seeds[i] = (attack starts, model baseline) and, with `previous`, the earlier round's
    attack file previous[i]), yielded in image order as each is done. Images run `workers` at
    a time in threads of this process, each on one torch thread on the CPU: the same numbers
    as one image at a time, in one start-up."""
    if len(seeds) != len(first_rounds) or (previous is not None and len(previous) != len(first_rounds)):
        raise ValueError(f"{len(first_rounds)} images but {len(seeds)} seed pairs; give one per image")

    def one(position: int) -> xr.Dataset:
        first = first_rounds[position]
        return attack_sites_again(
            first,
            stimuli,
            surrogates,
            models,
            settings,
            seed=seeds[position][0],
            baseline_seed=seeds[position][1],
            previous=None if previous is None else previous[position],
            device=device,
            progress=None if progress is None else progress(str(first.attrs["stimulus_id"])),
        )

    workers = max(1, min(workers, len(first_rounds)))
    if workers == 1:
        yield from map(one, range(len(first_rounds)))
        return
    threads = torch.get_num_threads()
    if device is None or device.type == "cpu":
        torch.set_num_threads(1)  # each worker's ops run in its own thread
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(one, range(len(first_rounds)))
    finally:
        torch.set_num_threads(threads)


def warm_start_of(
    previous: xr.Dataset, first_round: xr.Dataset, neuroid_id: np.ndarray, image: torch.Tensor
) -> torch.Tensor:
    """An earlier round's best perturbation of every (site, eps, direction) row of one clean
    `image` (1, C, H, W), in attack_targets' row order, in [0, 1] pixel units."""
    if str(previous.attrs["stimulus_id"]) != str(first_round.attrs["stimulus_id"]):
        raise ValueError(
            f"the warm start comes from an attack on {previous.attrs['stimulus_id']}, "
            f"not on {first_round.attrs['stimulus_id']}"
        )
    for name, expected in (
        ("neuroid_id", neuroid_id),
        ("eps", first_round["eps"].values),
        ("direction", first_round["direction"].values),
    ):
        if previous[name].values.tolist() != np.asarray(expected).tolist():
            raise ValueError(f"the earlier round's attack has other {name} values than this round's; rerun it")
    shown = previous["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values
    return to_tensor(shown.reshape(-1, *shown.shape[3:])).to(image.device) - image


def check_round_recordings(
    recordings: xr.Dataset,
    shown: xr.Dataset,
    clean: xr.Dataset,
    modelled_sites: Sequence[str],
    table: str | os.PathLike[str],
) -> xr.Dataset:
    """A rig's recordings of one round (`table`), checked against the round's stimulus set
    (`shown`: every image recorded, none from elsewhere) and the sites: every site the loop
    models and attacks (`modelled_sites`) recorded, and no site the clean recordings lack."""
    folder = f"rig/round{shown.attrs['round']}/"
    images = shown["stimulus_id"].values.astype(str).tolist()
    recorded = pd.unique(recordings["stimulus_id"].values.astype(str)).tolist()
    missing, extra = sorted(set(images) - set(recorded)), sorted(set(recorded) - set(images))
    if missing:
        raise KeyError(
            f"{os.fspath(table)}: no recordings of {len(missing)} of the round's {len(images)} images, "
            f"e.g. {missing[:3]}; record every image of the round's stimulus set ({folder})"
        )
    if extra:
        raise KeyError(
            f"{os.fspath(table)}: {len(extra)} stimulus ids are not images of this round's stimulus set ({folder}), "
            f"e.g. {extra[:3]} (the round's ids look like {images[:2]}); is this another round's table?"
        )
    found = set(recordings["neuroid_id"].values.astype(str).tolist())
    known = set(clean["neuroid_id"].values.astype(str).tolist())
    absent = [site for site in modelled_sites if site not in found]
    other = sorted(found - known)
    if absent or other:
        raise KeyError(
            f"{os.fspath(table)}: {len(absent)} of the {len(modelled_sites)} sites the loop attacks are missing, "
            f"e.g. {absent[:3]}; {len(other)} sites are not in the clean recordings, e.g. {other[:3]}; "
            "record the same sites as the clean recordings, named by the same neuroid_id"
        )
    return recordings
