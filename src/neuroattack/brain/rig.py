"""The recording session of perturbed images: what each shown image is, and its responses.

A session shows every attacked clean image, then every site's perturbed images in
(image, site, eps, direction) order (`perturbed_index`). The recorded responses are
matched back to the attacks (`responses_to_attacks`): each perturbed image counts for
the site it was made for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neuroattack.data.recordings import aligned_sites, mean_response


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


def responses_to_attacks(shown: xr.Dataset, recordings: xr.Dataset, attacks: Sequence[xr.Dataset]) -> xr.Dataset:
    """Predicted and recorded responses, (site, image, eps, direction), from recordings of
    the images of `perturbed_index` (each perturbed image counts for its target site)."""
    averaged = mean_response(recordings)
    missing = sorted(set(shown["stimulus_id"].values.tolist()) - set(averaged["stimulus_id"].values.tolist()))
    if missing:
        raise KeyError(
            f"recordings lack {len(missing)} of the shown images, e.g. {missing[:3]}; record every image of the set"
        )
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    neuroids = attacks[0]["neuroid_id"].values
    averaged = aligned_sites(averaged, neuroids)  # (stimulus_id, site)
    clean = averaged.sel(stimulus_id=clean_ids).values  # (image, site)
    perturbed_rows = shown.isel(stimulus_id=slice(len(clean_ids), None))
    recorded = averaged.sel(stimulus_id=perturbed_rows["stimulus_id"].values).values  # (row, site)
    eps_grid, directions = attacks[0]["eps"].values, attacks[0]["direction"].values

    def position(values: xr.DataArray, labels: Any) -> np.ndarray:
        index: np.ndarray = pd.Index(np.asarray(labels)).get_indexer(
            np.asarray(values.values, dtype=np.asarray(labels).dtype)
        )
        return index

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
