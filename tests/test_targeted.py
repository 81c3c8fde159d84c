"""Category preference: ranking, image selection, targeted attacks, figure 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import Tensor, nn

from neuroattack import io
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.targeted import (
    category_preference,
    category_preference_experiment,
    ranked_categories,
    select_targeted_images,
)
from neuroattack.data.stimuli import make_stimuli
from neuroattack.figures import figure3
from neuroattack.networks.readouts import LinearSiteResponse, to_tensor

SIDE = 8
CATEGORIES = ["apple", "boat", "cat", "dog", "egg"]
PER_CATEGORY = 5
SITES = 3
EPS = [0.05, 0.3, 1.5]
SETTINGS = AttackSettings(steps=10, restarts=1, wide_ball_factor=2.0, chunk_rows=4096)


class PixelFeatures(nn.Module):
    """The identity 'network': its features are the raw pixels, so every site is linear."""

    feature_dim = 3 * SIDE * SIDE

    def features(self, images: Tensor) -> Tensor:
        return images.flatten(1)


def mean_table(values: np.ndarray, stimulus_id: list[str], neuroid_id: list[str]) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("stimulus_id", "site"),
        coords={"stimulus_id": stimulus_id, "neuroid_id": ("site", neuroid_id)},
    )


def synthetic_stimuli(seed: int = 0) -> xr.Dataset:
    """Mid-grey noise images; each category tints one channel up or down."""
    rng = np.random.default_rng(seed)
    pixels, ids, labels = [], [], []
    for index, name in enumerate(CATEGORIES):
        tint = np.zeros(3)
        tint[index % 3] = 40.0 if index < 3 else -40.0
        for number in range(PER_CATEGORY):
            image = rng.integers(80, 176, size=(SIDE, SIDE, 3)) + tint
            pixels.append(np.clip(image, 0, 255).astype(np.uint8))
            ids.append(f"{name}_{number}")
            labels.append(name)
    return make_stimuli(np.stack(pixels), ids, labels)


def site_model(seed: int = 1) -> LinearSiteResponse:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(SITES, PixelFeatures.feature_dim, generator=generator).numpy() * 0.2
    return LinearSiteResponse(PixelFeatures(), weight, np.full(SITES, 5.0, dtype=np.float32))


@pytest.fixture(scope="module")
def setup() -> tuple[LinearSiteResponse, xr.Dataset, xr.DataArray, list[str]]:
    """A linear site model, its stimuli, and noise-free 'recordings' of its responses
    (neuroids stored in another order than the site models use)."""
    stimuli = synthetic_stimuli()
    response = site_model()
    predicted = response.all_sites(to_tensor(stimuli["pixels"].values)).numpy()
    neuroid_id = [f"site{i}" for i in range(SITES)]
    order = [2, 0, 1]
    recorded = mean_table(predicted[:, order], stimuli["stimulus_id"].values.tolist(), [neuroid_id[i] for i in order])
    return response, stimuli, recorded, neuroid_id


@pytest.fixture(scope="module")
def experiment(setup: tuple) -> xr.Dataset:
    response, stimuli, recorded, neuroid_id = setup
    return category_preference_experiment(
        response, stimuli, recorded, neuroid_id, EPS, images_per_site=4, n_categories=2, settings=SETTINGS, seed=3
    )


# --- ranking and selection ------------------------------------------------------------


def test_category_preference_means_and_ranking() -> None:
    ids = ["a1", "a2", "b1", "b2", "c1", "c2"]
    categories = ["a", "a", "b", "b", "c", "c"]
    values = np.array([[1, 9], [3, 7], [10, 2], [12, 4], [5, 0], [7, 2]], dtype=float)
    preference = category_preference(mean_table(values, ids, ["n0", "n1"]), categories)
    assert preference.dims == ("site", "category")
    np.testing.assert_allclose(preference.values, [[2, 11, 6], [8, 3, 1]])
    ranking = ranked_categories(preference)
    assert ranking.values.tolist() == [["a", "c", "b"], ["c", "b", "a"]]
    assert ranking["neuroid_id"].values.tolist() == ["n0", "n1"]


def test_category_preference_looks_categories_up_by_stimulus_id() -> None:
    values = np.array([[1.0], [5.0], [3.0]])
    labels = xr.DataArray(["y", "x", "z", "x"], dims="stimulus_id", coords={"stimulus_id": ["s3", "s1", "s9", "s2"]})
    preference = category_preference(mean_table(values, ["s1", "s2", "s3"], ["n"]), labels)
    np.testing.assert_allclose(preference.sel(category=["x", "y"]).values, [[3.0, 3.0]])
    with pytest.raises(KeyError, match="no category"):
        category_preference(mean_table(values, ["s1", "s2", "s4"], ["n"]), labels)


def test_ties_are_broken_by_category_name() -> None:
    preference = xr.DataArray([[1.0, 1.0, 0.0]], dims=("site", "category"), coords={"category": ["z", "b", "m"]})
    assert ranked_categories(preference).values.tolist() == [["m", "b", "z"]]


def test_selection_draws_only_from_least_preferred_categories() -> None:
    stimuli = synthetic_stimuli()
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, len(CATEGORIES)))
    preference = xr.DataArray(values, dims=("site", "category"), coords={"category": CATEGORIES})
    ranking = ranked_categories(preference)
    for direction, allowed in (("increase", ranking.values[:, :2]), ("decrease", ranking.values[:, -2:])):
        chosen = select_targeted_images(ranking, stimuli["category"], 6, 2, direction, seed=5)
        assert chosen["image_category"].shape == (4, 6)
        for site in range(4):
            ids = chosen["image_stimulus_id"].values[site]
            assert len(set(ids)) == 6
            assert set(chosen["image_category"].values[site]) <= set(allowed[site])
            assert set(stimuli["category"].sel(stimulus_id=ids).values) <= set(allowed[site])
    again = select_targeted_images(ranking, stimuli["category"], 6, 2, "increase", seed=5)
    other = select_targeted_images(ranking, stimuli["category"], 6, 2, "increase", seed=6)
    assert again.equals(select_targeted_images(ranking, stimuli["category"], 6, 2, "increase", seed=5))
    assert not again["image_stimulus_id"].equals(other["image_stimulus_id"])


def test_selection_errors_are_clear() -> None:
    stimuli = synthetic_stimuli()
    preference = xr.DataArray(np.arange(5.0)[None], dims=("site", "category"), coords={"category": CATEGORIES})
    ranking = ranked_categories(preference)
    with pytest.raises(ValueError, match="images_per_site"):
        select_targeted_images(ranking, stimuli["category"], PER_CATEGORY + 1, 1, "increase", seed=0)
    with pytest.raises(ValueError, match=r"preference\.categories"):
        select_targeted_images(ranking, stimuli["category"], 1, len(CATEGORIES), "increase", seed=0)
    with pytest.raises(ValueError, match="direction"):
        select_targeted_images(ranking, stimuli["category"], 1, 1, "sideways", seed=0)  # type: ignore[arg-type]


# --- the targeted attack --------------------------------------------------------------


def test_sites_are_matched_to_recordings_by_neuroid_id(setup: tuple, experiment: xr.Dataset) -> None:
    response, stimuli, _, _ = setup
    predicted = response.all_sites(to_tensor(stimuli["pixels"].values)).numpy()
    truth = category_preference(
        mean_table(predicted, stimuli["stimulus_id"].values.tolist(), ["site0", "site1", "site2"]), stimuli["category"]
    )
    np.testing.assert_allclose(experiment["preference"].values, truth.values, rtol=1e-5)
    assert experiment["preferred_category"].values.tolist() == truth.idxmax("category").values.tolist()
    np.testing.assert_allclose(experiment["natural_max"].sel(reference="predicted"), predicted.max(0), rtol=1e-5)


def test_up_attack_uses_least_preferred_images_and_raises_responses(experiment: xr.Dataset) -> None:
    up = experiment.sel(direction="increase")
    least_two = experiment["category_rank"].values[:, :2]
    for site in range(SITES):
        assert set(up["image_category"].values[site]) <= set(least_two[site])
    attacked = up["attacked_predicted"].values
    clean = up["clean_predicted"].values
    assert (attacked[:, :, 0] > clean).all()
    assert (np.diff(attacked, axis=2) > 0).all(), "larger budgets must reach higher responses"
    preferred = up["preferred_mean"].sel(reference="predicted").values
    assert (clean < preferred[:, None]).all(), "least-preferred images start below the preferred mean"
    assert (attacked[:, :, -1] > preferred[:, None]).all(), "a large budget makes super-stimuli"
    np.testing.assert_array_equal(up["fraction_above_preferred"].isel(eps=-1).values, 1.0)
    assert (up["fraction_above_preferred"].isel(eps=0).values < 1.0).any()


def test_delta_norms_stay_within_budget_after_quantisation(experiment: xr.Dataset, setup: tuple) -> None:
    _, stimuli, _, _ = setup
    eps = experiment["eps"].values[None, None, None, :]
    assert (experiment["delta_norm"].values <= eps + 1e-6).all()
    assert experiment["perturbed"].dtype == np.uint8
    up = experiment.sel(direction="increase")
    clean = stimuli["pixels"].sel(stimulus_id=up["image_stimulus_id"].values.ravel()).values.astype(float)
    shown = up["perturbed"].values.reshape(-1, len(EPS), SIDE, SIDE, 3).astype(float)
    norms = np.sqrt((((shown - clean[:, None]) / 255.0) ** 2).sum(axis=(2, 3, 4)))
    np.testing.assert_allclose(norms, up["delta_norm"].values.reshape(-1, len(EPS)), atol=1e-5)


def test_down_attack_lowers_responses_of_preferred_images(experiment: xr.Dataset) -> None:
    down = experiment.sel(direction="decrease")
    most_two = experiment["category_rank"].values[:, -2:]
    for site in range(SITES):
        assert set(down["image_category"].values[site]) <= set(most_two[site])
    attacked = down["attacked_predicted"].values
    assert (attacked[:, :, 0] < down["clean_predicted"].values).all()
    assert (np.diff(attacked, axis=2) < 0).all()
    np.testing.assert_array_equal(down["fraction_below_nonpreferred"].isel(eps=-1).values, 1.0)


def test_one_direction_matches_the_combined_experiment(setup: tuple, experiment: xr.Dataset) -> None:
    response, stimuli, recorded, neuroid_id = setup

    def run(neuroids: list[str], eps: list[float], directions: list[str]) -> xr.Dataset:
        return category_preference_experiment(response, stimuli, recorded, neuroids, eps, 4, 2, SETTINGS, 3, directions)

    down = run(neuroid_id, EPS, ["decrease"])
    assert down["direction"].values.tolist() == ["decrease"]
    np.testing.assert_allclose(down["attacked_predicted"], experiment["attacked_predicted"].sel(direction=["decrease"]))
    xr.testing.assert_equal(down["preferred_mean"], experiment["preferred_mean"])
    with pytest.raises(KeyError, match="absent from the recordings"):
        run(["site0", "nope", "site2"], EPS, ["increase"])
    with pytest.raises(ValueError, match=r"preference\.eps"):
        run(neuroid_id, [0.0, 1.0], ["increase"])
    with pytest.raises(ValueError, match="repeats a direction"):
        run(neuroid_id, EPS, ["increase", "increase"])
    with pytest.raises(ValueError, match="no direction"):
        run(neuroid_id, EPS, [])


def test_result_survives_the_netcdf_round_trip(experiment: xr.Dataset, tmp_path: Path) -> None:
    path = io.write_dataset(experiment, tmp_path / "preference.nc", "test", "test")
    back = io.read_dataset(path)
    assert back["perturbed"].dtype == np.uint8
    np.testing.assert_array_equal(back["perturbed"].values, experiment["perturbed"].values)
    assert back["image_stimulus_id"].values.tolist() == experiment["image_stimulus_id"].values.tolist()
    assert back["direction"].values.tolist() == ["increase", "decrease"]


def test_figure3_normalises_by_the_preferred_category(experiment: xr.Dataset) -> None:
    fig, plotted = figure3(experiment, sites=2)
    assert len(fig.axes) == 3
    assert plotted.sizes["site"] == 2
    scale = experiment["preferred_mean"].sel(reference="predicted").isel(site=[0, 1])
    expected = experiment["attacked_predicted"].isel(site=[0, 1]).mean("image") / scale
    np.testing.assert_allclose(plotted["normalised_mean"].sel(eps=EPS).transpose(*expected.dims), expected, rtol=1e-6)
    clean = experiment["clean_predicted"].isel(site=[0, 1]).mean("image") / scale
    np.testing.assert_allclose(plotted["normalised_mean"].sel(eps=0.0).transpose(*clean.dims), clean, rtol=1e-6)
    assert (plotted["normalised_mean"].sel(direction="increase").isel(eps=-1) > 1).all()
