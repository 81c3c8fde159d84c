"""Neural recordings in Brain-Score's NeuroidAssembly layout.

A recordings dataset holds one variable, `response` (presentation x site):
one row per presentation (a stimulus shown once), with presentation coords
`stimulus_id` and `repetition`, and site coords `neuroid_id` (Brain-Score's name for a
site's id), `region` and `animal`. The counting window is in the attrs `time_window_start_ms` and
`time_window_end_ms`. Real Brain-Score assemblies convert into this with no guesswork.

A NaN response is a missing trial (real assemblies have them): trial means and
split-half reliabilities use the valid trials only. A site is usable when at least
half of the stimuli have `MIN_VALID_REPETITIONS` valid repetitions (one for each half
of a split) and its reliability is finite (`usable_sites`); an unusable site is never
ranked, fitted or attacked.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from neuroattack.config import TIME_WINDOW_MS as TIME_WINDOW_MS  # the default window, defined with the config

MIN_VALID_REPETITIONS = 2  # per (stimulus, site): a trial for each half of a split
MIN_USABLE_FRACTION = 0.5  # of the stimuli, for a site to be usable
MIN_CORRELATED_STIMULI = 3  # below this a split-half correlation is not computed (NaN)

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
    """Assemble a recordings dataset; `response` is (presentation, site)."""
    n_sites = len(neuroid_id)
    if response.shape != (len(stimulus_id), n_sites):
        raise ValueError(
            f"response shape {response.shape} does not match ({len(stimulus_id)} presentations, {n_sites} sites)"
        )
    regions = [region] * n_sites if isinstance(region, str) else list(region)
    animals = [animal] * n_sites if isinstance(animal, str) else list(animal)
    ds = xr.Dataset(
        {"response": (("presentation", "site"), np.asarray(response, dtype=np.float32))},
        coords={
            "stimulus_id": ("presentation", np.asarray(stimulus_id, dtype=str)),
            "repetition": ("presentation", np.asarray(repetition, dtype=np.int32)),
            "neuroid_id": ("site", np.asarray(neuroid_id, dtype=str)),
            "region": ("site", np.asarray(regions, dtype=str)),
            "animal": ("site", np.asarray(animals, dtype=str)),
        },
    )
    ds["response"].attrs = {"long_name": "spike count in the time window", "units": "count"}
    ds.attrs = {"time_window_start_ms": time_window_ms[0], "time_window_end_ms": time_window_ms[1]}
    return ds


def trials_by_stimulus(
    stimulus_id: Labels, values: np.ndarray, stimuli: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Presentations' `values` (presentation, site) placed by stimulus: (stimulus, slot, site),
    slot k holding the stimulus's k-th presentation in recorded order, stimuli shown fewer
    times than the most-shown one padded with NaN. Stimuli in first-seen order, or in the
    order of `stimuli` (other presentations dropped; each of them must have been shown).
    One stable sort places every trial (a round has tens of thousands)."""
    shown_ids = [str(sid) for sid in np.asarray(stimulus_id).tolist()]
    ids = list(dict.fromkeys(shown_ids)) if stimuli is None else [str(sid) for sid in stimuli]
    index = {sid: i for i, sid in enumerate(ids)}
    row = np.array([index.get(sid, -1) for sid in shown_ids], dtype=np.int64)
    kept = np.flatnonzero(row >= 0)
    shown = np.bincount(row[kept], minlength=len(ids))
    if not shown.all():
        raise KeyError(f"the recordings never show {[sid for sid, n in zip(ids, shown, strict=True) if n == 0][:5]}")
    order = kept[np.argsort(row[kept], kind="stable")]
    slot = np.arange(len(order)) - np.repeat(np.cumsum(shown) - shown, shown)
    trials = np.full((len(ids), int(shown.max(initial=0)), values.shape[1]), np.nan, dtype=values.dtype)
    trials[row[order], slot] = values[order]
    return trials, ids


def trial_mean(trials: np.ndarray) -> np.ndarray:
    """Mean of the valid trials along axis 1 of `trials_by_stimulus`'s array (NaN where none is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no valid trial: NaN, as intended
        mean: np.ndarray = np.nanmean(trials, axis=1)
    return mean


def trial_variance(trials: np.ndarray) -> np.ndarray:
    """Unbiased variance of the valid trials along axis 1 (NaN where fewer than two are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two valid trials: NaN, as intended
        variance: np.ndarray = np.nanvar(trials, axis=1, ddof=1)
    return variance


def mean_response(recordings: xr.Dataset) -> xr.DataArray:
    """Trial-averaged response, (stimulus_id x site), stimuli in first-seen order."""
    response = recordings["response"].transpose("presentation", "site")
    trials, ids = trials_by_stimulus(recordings["stimulus_id"].values, response.values)
    site_coords = {name: coord for name, coord in response.coords.items() if coord.dims == ("site",)}
    stimulus_id = np.array(ids, dtype=object)  # as xarray's groupby labels them
    return xr.DataArray(
        trial_mean(trials),
        dims=("stimulus_id", "site"),
        coords={"stimulus_id": stimulus_id, **site_coords},
        name=response.name,
        attrs=response.attrs,
    )


def aligned_sites(mean_responses: xr.DataArray, neuroid_id: Labels) -> xr.DataArray:
    """Recorded means (stimulus_id, site) in the order of the site models' neuroid_id."""
    recorded = [str(n) for n in mean_responses["neuroid_id"].values]
    position = {name: i for i, name in enumerate(recorded)}
    missing = [str(n) for n in neuroid_id if str(n) not in position]
    if missing:
        raise KeyError(f"site models name sites absent from the recordings: {missing[:5]}")
    columns = [position[str(n)] for n in neuroid_id]
    return mean_responses.isel(site=columns)


def repetition_tensor(recordings: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """Responses as float64 (stimulus, repetition, site), stimuli in first-seen order;
    stimuli shown fewer times than the most-shown one are padded with NaN (missing trials)."""
    values = np.asarray(recordings["response"].transpose("presentation", "site").values, dtype=np.float64)
    tensor, ids = trials_by_stimulus(recordings["stimulus_id"].values, values)
    if tensor.shape[1] < MIN_VALID_REPETITIONS:
        raise ValueError("split-half reliability needs at least 2 repetitions of the stimuli; every one was shown once")
    return tensor, ids


def valid_repetitions(recordings: xr.Dataset) -> xr.DataArray:
    """Number of valid (finite) repetitions per (stimulus_id, site)."""
    tensor, ids = repetition_tensor(recordings)
    return xr.DataArray(
        np.isfinite(tensor).sum(axis=1),
        dims=("stimulus_id", "site"),
        coords={"stimulus_id": ids, "neuroid_id": ("site", recordings["neuroid_id"].values)},
    )


def split_half_reliability(recordings: xr.Dataset, n_splits: int, seed: int) -> xr.DataArray:
    """Spearman-Brown corrected split-half reliability per site, mean over random splits.

    Each split divides the repetition slots at random into two halves; a half's mean uses
    its valid trials, and the correlation between the halves runs over the stimuli with a
    valid trial in both (NaN below `MIN_CORRELATED_STIMULI` of them). Without missing
    trials this is the plain split-half estimate."""
    tensor, _ = repetition_tensor(recordings)
    rng = np.random.default_rng(seed)
    n_reps = tensor.shape[1]
    estimates = []
    for _ in range(n_splits):
        order = rng.permutation(n_reps)
        half_a = _nanmean(tensor[:, order[: n_reps // 2]], axis=1)
        half_b = _nanmean(tensor[:, order[n_reps // 2 :]], axis=1)
        r = _pairwise_complete_pearson(half_a, half_b)
        with np.errstate(invalid="ignore", divide="ignore"):
            estimates.append(2 * r / (1 + r))
    reliability = _nanmean(np.stack(estimates), axis=0)
    return xr.DataArray(reliability, dims="site", coords={"neuroid_id": ("site", recordings["neuroid_id"].values)})


def usable_sites(recordings: xr.Dataset, reliability: np.ndarray) -> np.ndarray:
    """Which sites are usable: at least `MIN_USABLE_FRACTION` of the stimuli have
    `MIN_VALID_REPETITIONS` valid repetitions, and the reliability is finite."""
    enough = (valid_repetitions(recordings) >= MIN_VALID_REPETITIONS).mean("stimulus_id").values
    usable: np.ndarray = (enough >= MIN_USABLE_FRACTION) & np.isfinite(np.asarray(reliability, dtype=np.float64))
    return usable


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the finite entries along `axis` (NaN where there are none), without warnings."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: np.ndarray = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean


def _pairwise_complete_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns over the rows where both are finite."""
    both = np.isfinite(a) & np.isfinite(b)
    if both.all():
        return _columnwise_pearson(a, b)
    n = both.sum(axis=0)
    a = np.where(both, a, 0.0)
    b = np.where(both, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(both, a - a.sum(axis=0) / n, 0.0)
        b = np.where(both, b - b.sum(axis=0) / n, 0.0)
        correlation: np.ndarray = (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    return np.where(n >= MIN_CORRELATED_STIMULI, correlation, np.nan)


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
