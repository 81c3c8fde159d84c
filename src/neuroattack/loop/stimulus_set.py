"""A round's stimulus set: the images one round shows the animal (or the simulated brain).

Every attacked clean image, every site's perturbed images in (image, site, eps, direction)
order (`perturbed_index`), and one random-direction image per (clean image, eps): the
model-free baseline. Perturbed and random ids carry the round, so rounds never share an id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from neuroattack.data.stimuli import make_stimuli
from neuroattack.geometry import LEVELS, PROJECTION_SLACK, clamp_to_box, norm_named
from neuroattack.networks.readouts import to_tensor


def perturbed_index(attacks: Sequence[xr.Dataset]) -> xr.Dataset:
    """What each image of the session is, without pixels: every attacked clean image,
    then every site's perturbed images in (image, site, eps, direction) order."""
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    neuroids = attacks[0]["neuroid_id"].values.astype(str)
    eps_grid, directions = attacks[0]["eps"].values, attacks[0]["direction"].values.astype(str)
    image, site, eps, direction = (
        index.ravel()
        for index in np.meshgrid(
            np.arange(len(clean_ids)),
            np.arange(len(neuroids)),
            np.arange(len(eps_grid)),
            np.arange(len(directions)),
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
            "category": (
                "stimulus_id",
                np.asarray(["clean"] * n_clean + ["perturbed"] * len(perturbed_ids), dtype=str),
            ),
            "clean_stimulus_id": ("stimulus_id", np.asarray(clean_ids + [clean_ids[i] for i in image], dtype=str)),
            "target_neuroid_id": ("stimulus_id", np.concatenate([np.full(n_clean, ""), neuroids[site]]).astype(str)),
            "eps": ("stimulus_id", np.concatenate([np.zeros(n_clean), eps_grid[eps].astype(float)])),
            "direction": ("stimulus_id", np.concatenate([np.full(n_clean, ""), directions[direction]]).astype(str)),
        }
    )


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
