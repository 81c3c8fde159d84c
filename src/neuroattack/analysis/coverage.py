"""Coverage (figure 4): is every site susceptible, and is every clean image near an
adversarial one? Per-(site, image, eps) normalised changes, per-site s~_i(eps) with
intervals over images, and the fraction of (site, image) pairs moved by one s.d.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    CONFIDENCE,
    SURROGATE,
    sign_corrected,
    site_changes,
    site_sigma,
    white_box,
)
from neuroattack.data.recordings import aligned_sites, mean_response


def pair_changes(
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    white_box_changes: xr.Dataset | None,
) -> xr.DataArray:
    """Normalised change per (population, site, image, eps) of the populations figure 4 shows:
    the brain's black-box estimate (with recordings of perturbed images), the surrogate's
    prediction, and the white-box truth (a simulated brain); `site_changes` without its
    random directions."""
    changes = site_changes(attacks, responses, recordings, white_box_changes)
    shown = [name for name in (BRAIN_BLACK_BOX, SURROGATE, BRAIN_WHITE_BOX) if name in changes["population"].values]
    return changes.sel(population=shown)


def per_site(changes: xr.DataArray, bootstrap: int, seed: int, confidence: float = CONFIDENCE) -> xr.Dataset:
    """s~_i(eps) for every site (mean over images) with a bootstrap interval over images."""
    values = changes.transpose(..., "image", "eps").values
    rng = np.random.default_rng(seed)
    n_images = values.shape[-2]
    draws = rng.integers(n_images, size=(bootstrap, n_images))
    samples = np.stack([np.nanmean(values[..., draw, :], axis=-2) for draw in draws])
    tail = (1 - confidence) / 2
    dims = [d for d in changes.dims if d != "image"]
    return xr.Dataset(
        {
            "site_s_tilde": (dims, np.nanmean(values, axis=-2)),
            "site_ci_low": (dims, np.quantile(samples, tail, axis=0)),
            "site_ci_high": (dims, np.quantile(samples, 1 - tail, axis=0)),
        },
        coords={name: changes.coords[name] for name in changes.coords if "image" not in changes.coords[name].dims},
    )


def moved_fraction(changes: xr.DataArray, level: float = 1.0) -> xr.DataArray:
    """Fraction of (site, image) pairs whose normalised change is at least `level`."""
    moved: xr.DataArray = (changes >= level).where(changes.notnull()).mean(["site", "image"])
    return moved


def coverage(
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    white_box_changes: xr.Dataset | None,
    sensitivity: xr.Dataset,
    bootstrap: int,
    seed: int,
) -> xr.Dataset:
    """Everything figure 4 plots: per-pair changes, per-site s~_i(eps) with intervals, the
    fraction of pairs moved by one s.d., and the two reference levels (the random-pair level
    of the recorded sites, as in figure 1's `sensitivity`)."""
    populations = sensitivity["population"].values.tolist()
    reference = BRAIN_BLACK_BOX if BRAIN_BLACK_BOX in populations else SURROGATE
    random_pair_level = float(sensitivity["random_pair_level"].sel(population=reference))
    changes = pair_changes(attacks, responses, recordings, white_box_changes)
    result = per_site(changes, bootstrap, seed)
    result["pair_change"] = changes
    result["moved_fraction"] = moved_fraction(changes)
    result.attrs = {"one_sd_level": 1.0, "random_pair_level": random_pair_level, "bootstrap": bootstrap}
    return result


def example_sites(changes: xr.DataArray, count: int) -> np.ndarray:
    """`count` sites spread evenly over the ranking of per-site sensitivity at the largest
    eps (the most sensitive, the least, and between): examples that are not cherry-picked."""
    if count < 1:
        raise ValueError(f"figure 2 needs at least one site, got {count}")
    ranking = np.argsort(-changes.isel(eps=-1).mean("image").values, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(ranking) - 1, min(count, len(ranking)))).astype(int))
    return np.asarray(ranking[picks])


def examples(
    stimuli: xr.Dataset,
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    sites: int,
) -> xr.Dataset:
    """What figure 2 shows for `sites` example sites on the first attacked image: the clean
    and perturbed images, each perturbation, the predicted (and recorded) responses, the
    clean response, and the range of the site's responses to every natural image."""
    attack = attacks[0]
    image = str(attack.attrs["stimulus_id"])
    neuroids = attack["neuroid_id"].values
    clean_means = aligned_sites(mean_response(recordings), neuroids)  # (stimulus_id, site)
    sigma = site_sigma(recordings, neuroids)
    predicted_change = white_box(attack["site_change"], sigma).expand_dims(image=[image])
    if responses is not None:
        ranked = sign_corrected(responses["predicted_change"], responses["recorded_change"], sigma)
    else:
        ranked = predicted_change
    chosen = example_sites(ranked.sel(image=[image]).transpose("site", "image", "eps"), sites)
    shown = attack.isel(site=chosen)
    clean = stimuli["pixels"].sel(stimulus_id=image, drop=True).transpose("y", "x", "channel")
    perturbed = shown["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel")
    natural = clean_means.isel(site=chosen)
    result = xr.Dataset(
        {
            "clean_pixels": (("y", "x", "channel"), clean.values),
            "perturbed": perturbed,
            "perturbation": (perturbed.astype(np.float32) - clean.astype(np.float32)) / 255,
            "predicted_clean": ("site", shown["site_clean"].values),
            "predicted": shown["site_clean"] + shown["site_change"],
            "natural_min": ("site", natural.min("stimulus_id").values),
            "natural_max": ("site", natural.max("stimulus_id").values),
            "natural_mean": ("site", natural.mean("stimulus_id").values),
            "natural_sd": ("site", natural.std("stimulus_id", ddof=1).values),
        },
        coords={"neuroid_id": ("site", neuroids[chosen]), "eps": attack["eps"], "direction": attack["direction"]},
    )
    if responses is not None:
        site_responses = responses.isel(site=chosen).sel(image=image)
        result["recorded_clean"] = ("site", site_responses["recorded_clean"].values)
        result["recorded"] = (
            site_responses["recorded"]
            .transpose("site", "eps", "direction")
            .drop_vars([c for c in site_responses.coords if c not in ("eps", "direction")])
        )
    result.attrs = {"stimulus_id": image, "site_choice": "evenly spaced over the ranking at the largest eps"}
    return result
