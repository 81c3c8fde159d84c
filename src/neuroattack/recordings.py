"""Neural recordings in Brain-Score's NeuroidAssembly layout.

A recordings dataset holds one variable, `response` (presentation x neuroid):
one row per presentation (a stimulus shown once), with presentation coords
`stimulus_id` and `repetition`, and neuroid coords `neuroid_id`, `region` and
`animal`. The counting window is in the attrs `time_window_start_ms` and
`time_window_end_ms`. Real Brain-Score assemblies convert into this with no guesswork.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

TIME_WINDOW_MS = (70, 170)

Labels = Sequence[str] | np.ndarray  # one label per entry, as a list or a numpy array


def make_recordings(
    response: np.ndarray,
    stimulus_id: Labels,
    repetition: Sequence[int] | np.ndarray,
    neuroid_id: Labels,
    region: Labels | str,
    animal: Labels | str,
    time_window_ms: tuple[int, int] = TIME_WINDOW_MS,
) -> xr.Dataset:
    """Assemble a recordings dataset; `response` is (presentation, neuroid)."""
    n_neuroids = len(neuroid_id)
    if response.shape != (len(stimulus_id), n_neuroids):
        raise ValueError(
            f"response shape {response.shape} does not match ({len(stimulus_id)} presentations, {n_neuroids} neuroids)"
        )
    regions = [region] * n_neuroids if isinstance(region, str) else list(region)
    animals = [animal] * n_neuroids if isinstance(animal, str) else list(animal)
    ds = xr.Dataset(
        {"response": (("presentation", "neuroid"), np.asarray(response, dtype=np.float32))},
        coords={
            "stimulus_id": ("presentation", np.asarray(stimulus_id, dtype=str)),
            "repetition": ("presentation", np.asarray(repetition, dtype=np.int32)),
            "neuroid_id": ("neuroid", np.asarray(neuroid_id, dtype=str)),
            "region": ("neuroid", np.asarray(regions, dtype=str)),
            "animal": ("neuroid", np.asarray(animals, dtype=str)),
        },
    )
    ds["response"].attrs = {"long_name": "spike count in the time window", "units": "count"}
    ds.attrs = {"time_window_start_ms": time_window_ms[0], "time_window_end_ms": time_window_ms[1]}
    return ds


def mean_response(recordings: xr.Dataset) -> xr.DataArray:
    """Trial-averaged response, (stimulus_id x neuroid), stimuli in first-seen order."""
    response = recordings["response"]
    averaged = response.groupby("stimulus_id").mean("presentation")
    order = list(dict.fromkeys(recordings["stimulus_id"].values.tolist()))
    return averaged.sel(stimulus_id=order).transpose("stimulus_id", "neuroid")


def aligned_sites(mean_responses: xr.DataArray, neuroid_id: Labels) -> xr.DataArray:
    """Recorded means (stimulus_id, site) in the order of the site models' neuroid_id."""
    recorded = [str(n) for n in mean_responses["neuroid_id"].values]
    position = {name: i for i, name in enumerate(recorded)}
    missing = [str(n) for n in neuroid_id if str(n) not in position]
    if missing:
        raise KeyError(f"site models name neuroids absent from the recordings: {missing[:5]}")
    columns = [position[str(n)] for n in neuroid_id]
    return mean_responses.isel(neuroid=columns).rename(neuroid="site")


def repetition_tensor(recordings: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """Responses as (stimulus, repetition, neuroid); ragged repetitions are cut to the fewest."""
    ids = list(dict.fromkeys(recordings["stimulus_id"].values.tolist()))
    stimulus_of_row = recordings["stimulus_id"].values
    values = recordings["response"].values
    rows = [values[stimulus_of_row == sid] for sid in ids]
    fewest = min(len(r) for r in rows)
    if fewest < 2:
        raise ValueError("split-half reliability needs at least 2 repetitions of every stimulus")
    return np.stack([r[:fewest] for r in rows]), ids


def split_half_reliability(recordings: xr.Dataset, n_splits: int, seed: int) -> xr.DataArray:
    """Spearman-Brown corrected split-half reliability per neuroid, mean over random splits."""
    tensor, _ = repetition_tensor(recordings)
    rng = np.random.default_rng(seed)
    n_reps = tensor.shape[1]
    estimates = []
    for _ in range(n_splits):
        order = rng.permutation(n_reps)
        half_a = tensor[:, order[: n_reps // 2]].mean(axis=1)
        half_b = tensor[:, order[n_reps // 2 :]].mean(axis=1)
        r = _columnwise_pearson(half_a, half_b)
        estimates.append(2 * r / (1 + r))
    reliability = np.nanmean(np.stack(estimates), axis=0)
    return xr.DataArray(
        reliability, dims="neuroid", coords={"neuroid_id": ("neuroid", recordings["neuroid_id"].values)}
    )


def _columnwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation: np.ndarray = (a * b).sum(axis=0) / denominator
    return correlation


def columnwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two (samples x columns) arrays."""
    return _columnwise_pearson(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
