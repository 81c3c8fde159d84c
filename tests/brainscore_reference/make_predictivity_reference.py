"""Write predictivity_reference.nc: Brain-Score's own PLS predictivity, internal-consistency
ceiling and ceiled score (brainscore-vision's MajajHong2015 IT-pls recipe) on a small data set.

brainscore-vision needs brainscore-core (numpy<2, xarray<2022.6), so this runs in the separate
environment of make_reference.py, with brainscore-vision and the few modules its metrics import:

    .venv-brainscore/bin/pip install "scikit-learn<1.6" scipy psutil tqdm
    .venv-brainscore/bin/pip install --no-deps brainscore-vision==2.4.2
    .venv-brainscore/bin/python tests/brainscore_reference/make_predictivity_reference.py tests/brainscore_reference

The file holds the inputs (features, every repetition's responses, categories) beside Brain-Score's
numbers, so tests/test_screening.py recomputes them with neuroattack.analysis.screening under any numpy.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import xarray as xr
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly
from brainscore_vision.benchmark_helpers.neural_common import explained_variance
from brainscore_vision.metrics.internal_consistency.ceiling import InternalConsistency
from brainscore_vision.metrics.regression_correlation.metric import (
    CrossRegressedCorrelation,
    pearsonr_correlation,
    pls_regression,
)

STIMULI, CATEGORIES, UNITS, SITES, REPETITIONS = 120, 8, 40, 7, 6


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (stimulus, unit), responses (stimulus, repetition, site) made from them plus
    trial noise, and categories (stimulus)."""
    rng = np.random.default_rng(2026)
    features = rng.standard_normal((STIMULI, UNITS))
    rates = features @ rng.standard_normal((UNITS, SITES)) * 0.3 + 5.0
    repetitions = rates[:, None, :] + 2.0 * rng.standard_normal((STIMULI, REPETITIONS, SITES))
    categories = np.array([f"object{i % CATEGORIES}" for i in range(STIMULI)])
    return features, repetitions, categories


def main(out: Path) -> None:
    features, repetitions, categories = data()
    ids = [f"image{i:03d}" for i in range(STIMULI)]
    presentation = {"stimulus_id": ("presentation", ids), "object_name": ("presentation", categories)}
    source = NeuroidAssembly(
        features,
        coords={
            **presentation,
            "neuroid_id": ("neuroid", [f"unit{u}" for u in range(UNITS)]),
            "layer": ("neuroid", ["penultimate"] * UNITS),
        },
        dims=["presentation", "neuroid"],
    )
    # two neuroid coords: with one, brainscore-vision 2.4.2 cannot package its predictions
    sites = {"neuroid_id": ("neuroid", [f"site{s}" for s in range(SITES)]), "region": ("neuroid", ["IT"] * SITES)}
    target = NeuroidAssembly(
        repetitions.mean(axis=1), coords={**presentation, **sites}, dims=["presentation", "neuroid"]
    )
    metric = CrossRegressedCorrelation(
        regression=pls_regression(),
        correlation=pearsonr_correlation(),
        crossvalidation_kwargs={"stratification_coord": "object_name"},
    )
    score = metric(source, target)
    trials = repetitions.transpose(1, 0, 2).reshape(-1, SITES)  # presentation = repetition * STIMULI + stimulus
    by_trial = NeuroidAssembly(
        trials,
        coords={
            "stimulus_id": ("presentation", ids * REPETITIONS),
            "object_name": ("presentation", list(categories) * REPETITIONS),
            "repetition": ("presentation", np.repeat(np.arange(REPETITIONS), STIMULI)),
            **sites,
        },
        dims=["presentation", "neuroid"],
    )
    ceiling = InternalConsistency()(by_trial)
    ceiled = explained_variance(score, ceiling)
    reference = xr.Dataset(
        {
            "features": (("stimulus", "unit"), features),
            "repetitions": (("stimulus", "repetition", "site"), repetitions),
            "category": ("stimulus", categories),
            "brainscore_r": ((), float(score.values)),
            "brainscore_ceiling": ((), float(ceiling.values)),
            "brainscore_ceiled": ((), float(ceiled.values)),
        }
    )
    versions = {name: version(name) for name in ("brainscore-vision", "brainscore-core", "scikit-learn", "numpy")}
    reference.attrs = {"versions": ", ".join(f"{name}=={v}" for name, v in versions.items()), "random_state": 1}
    reference.to_netcdf(out / "predictivity_reference.nc", engine="netcdf4")
    print(f"r = {float(score.values):.6f}, ceiling = {float(ceiling.values):.6f}, ceiled = {float(ceiled.values):.6f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
