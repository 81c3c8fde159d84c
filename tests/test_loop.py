"""The closed loop's library: the noise-corrected random baseline, round stimulus sets, refits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from neuroattack.analysis.sensitivity import noise_corrected_squared_change
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_round, attack_sites
from neuroattack.brain.sitemodels import ensemble_response, surrogate_response
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS
from neuroattack.data.recordings import make_recordings
from neuroattack.data.stimuli import make_stimuli
from neuroattack.geometry import LEVELS
from neuroattack.loop.responses import random_baseline, round_responses, trial_statistics
from neuroattack.loop.rig import check_round_recordings
from neuroattack.loop.stimulus_set import round_stimulus_set
from neuroattack.networks.build import build_network, weights_to_dataset
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import LinearSiteResponse, to_tensor


def poisson_session(rates: np.ndarray, repetitions: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Trial means, unbiased trial variances and counts of Poisson trials at `rates`."""
    trials = rng.poisson(np.repeat(rates[None], repetitions, axis=0)).astype(float)
    return trials.mean(axis=0), trials.var(axis=0, ddof=1), np.full(rates.shape, repetitions)


def test_noise_corrected_squared_change_is_unbiased_where_the_naive_one_is_not() -> None:
    rng = np.random.default_rng(0)
    clean_rates = rng.uniform(0.5, 6.0, size=400)
    true_change = rng.normal(0.0, 0.4, size=400)  # random directions: changes of either sign, small
    perturbed_rates = np.clip(clean_rates + true_change, 0.05, None)
    truth = float(np.mean((perturbed_rates - clean_rates) ** 2))
    corrected, naive = [], []
    for _ in range(200):
        clean = poisson_session(clean_rates, 10, rng)
        perturbed = poisson_session(perturbed_rates, 10, rng)
        corrected.append(float(np.mean(noise_corrected_squared_change(*perturbed, *clean))))
        naive.append(float(np.mean((perturbed[0] - clean[0]) ** 2)))
    standard_error = np.std(corrected) / math.sqrt(len(corrected))
    assert abs(np.mean(corrected) - truth) < 4 * standard_error, (np.mean(corrected), truth)
    # Poisson noise of the difference of two 10-trial means is about (rate_p + rate_c) / 10: far above the truth.
    assert np.mean(naive) > truth + 50 * standard_error
    assert truth < 0.5 * np.mean(naive)


def test_random_baseline_is_the_root_of_the_mean_normalised_squared_change() -> None:
    squared = xr.DataArray(np.full((3, 4, 2), 4.0), dims=("site", "image", "eps"), coords={"eps": [0.5, 1.0]})
    squared[0] = -4.0  # unbiased estimates may be negative; only the mean is rooted
    sigma = xr.DataArray([2.0, 1.0, 1.0], dims="site")
    summary = random_baseline(squared, sigma, bootstrap=20, seed=0)
    expected = math.sqrt((-1.0 + 4.0 + 4.0) / 3)
    np.testing.assert_allclose(summary["s_tilde"].values, expected, rtol=1e-6)
    assert bool((summary["ci_low"] <= summary["s_tilde"] + 1e-9).all())


def test_trial_statistics_are_each_stimulus_and_sites_valid_trials_in_any_order() -> None:
    rng = np.random.default_rng(3)
    shown = rng.permutation(np.repeat(["a", "b", "c", "d"], [4, 3, 5, 2]))  # interleaved, unequal counts
    response = rng.normal(size=(len(shown), 3)).astype(np.float32)
    response[rng.random(response.shape) < 0.2] = np.nan
    response[shown == "d", 1] = np.nan  # no valid trial of d at s1
    response[shown == "c", 2] = [np.nan, np.nan, np.nan, np.nan, 1.5]  # one valid trial of c at s2
    recordings = make_recordings(response, shown, np.arange(len(shown)), ["s0", "s1", "s2"], "IT", "m")
    stats = trial_statistics(recordings, ["d", "a", "c"], ["s2", "s0", "s1"])
    assert stats["stimulus_id"].values.tolist() == ["d", "a", "c"]
    assert stats["neuroid_id"].values.tolist() == ["s2", "s0", "s1"]
    for row, sid in enumerate(["d", "a", "c"]):
        for column, site in enumerate([2, 0, 1]):
            trials = response[shown == sid, site]
            valid = trials[np.isfinite(trials)]
            assert int(stats["count"][row, column]) == len(valid)
            expected_mean = valid.mean() if len(valid) else np.nan
            expected_variance = valid.var(ddof=1) if len(valid) > 1 else np.nan
            np.testing.assert_allclose(float(stats["mean"][row, column]), expected_mean, rtol=1e-6)
            np.testing.assert_allclose(float(stats["variance"][row, column]), expected_variance, rtol=1e-5)
    with pytest.raises(KeyError, match="never show"):
        trial_statistics(recordings, ["a", "e"], ["s0"])
    with pytest.raises(KeyError, match="lack sites"):
        trial_statistics(recordings, ["a"], ["s9"])


def attack_of(stimulus_id: str, side: int, sites: int, eps: list[float], rng: np.random.Generator) -> xr.Dataset:
    """An attack file's site part, as the loop reads it."""
    cube = (sites, len(eps), 2)
    return xr.Dataset(
        {
            "site_clean": ("site", rng.uniform(1, 3, sites)),
            "site_change": (("site", "eps", "direction"), rng.normal(size=cube)),
            "perturbed": (
                ("site", "eps", "direction", "y", "x", "channel"),
                rng.integers(0, 256, (*cube, side, side, 3), dtype=np.uint8),
            ),
        },
        coords={
            "eps": eps,
            "direction": ["increase", "decrease"],
            "neuroid_id": ("site", [f"s{i}" for i in range(sites)]),
        },
        attrs={"stimulus_id": stimulus_id},
    )


@pytest.fixture
def round_set() -> tuple[xr.Dataset, list[xr.Dataset], xr.Dataset]:
    rng = np.random.default_rng(1)
    stimuli = make_stimuli(
        rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), [f"img{i}" for i in range(5)], list("aabbc")
    )
    attacks = [attack_of(f"img{i}", 8, 3, [0.5, 2.0], rng) for i in (1, 3)]
    return stimuli, attacks, round_stimulus_set(stimuli, attacks, 2, seed=5, norm="l2")


def test_a_round_shows_clean_perturbed_and_random_images_with_ids_of_its_own(round_set) -> None:  # type: ignore[no-untyped-def]
    stimuli, attacks, shown = round_set
    categories = shown["category"].values.tolist()
    assert categories.count("clean") == 2 and categories.count("perturbed") == 2 * 3 * 2 * 2
    assert categories.count("random") == 2 * 2  # one per (clean image, eps), shown to every site
    later = shown["stimulus_id"].values[2:].tolist()
    assert all(s.startswith("round2__") for s in later)
    random = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values == "random"))
    clean = stimuli["pixels"].sel(stimulus_id=random["clean_stimulus_id"].values).values.astype(float)
    norms = np.sqrt((((random["pixels"].values - clean) / LEVELS) ** 2).sum(axis=(1, 2, 3)))
    assert bool((norms <= random["eps"].values + 1e-6).all()) and bool((norms > 0.5 * random["eps"].values).all())
    assert random["clean_category"].values.tolist() == ["a", "a", "b", "b"]
    again = round_stimulus_set(stimuli, attacks, 3, seed=6, norm="l2")
    assert not np.array_equal(again["pixels"].values[-4:], shown["pixels"].values[-4:])  # fresh random directions


def test_round_responses_match_recordings_to_attacks_and_random_images(round_set) -> None:  # type: ignore[no-untyped-def]
    _, attacks, shown = round_set
    ids = shown["stimulus_id"].values
    rates = np.where(shown["category"].values == "random", 5.0, 2.0)
    repetitions = 4
    response = np.repeat(rates, 3).reshape(-1, 3)  # every site: 2 (clean, perturbed) or 5 (random), no noise
    recordings = make_recordings(
        np.tile(response, (repetitions, 1)),
        np.tile(ids, repetitions),
        np.repeat(np.arange(repetitions), len(ids)),
        ["s0", "s1", "s2"],
        "IT",
        "test",
    )
    responses = round_responses(shown, recordings, attacks)
    assert responses["random_recorded_change"].dims == ("site", "image", "eps")
    np.testing.assert_allclose(responses["random_recorded_change"].values, 3.0)
    np.testing.assert_allclose(responses["random_squared_change"].values, 9.0)  # no trial variance
    np.testing.assert_allclose(responses["recorded_change"].values, 0.0)
    with pytest.raises(KeyError, match="random-direction images"):
        keep = np.flatnonzero(~np.isin(recordings["stimulus_id"].values, ids[-1:]))
        round_responses(shown, recordings.isel(presentation=keep), attacks)


# --- ways to tighten the bound: an ensemble surrogate, warm starts ----------------------


def surrogate_member(seed: int, sites: int = 3) -> tuple[xr.Dataset, xr.Dataset]:
    """A small random network's weights and a readout of `sites` sites from its features."""
    torch.manual_seed(seed)
    arch = Architecture(widths=(8, 16), blocks=(1, 1), num_classes=3)
    network = build_network(arch).eval().requires_grad_(False)
    n_features = network.features(torch.zeros(1, 3, 16, 16)).shape[1]
    rng = np.random.default_rng(seed)
    models = xr.Dataset(
        {
            "weight": (("site", "feature"), rng.normal(size=(sites, n_features)).astype(np.float32)),
            "bias": ("site", rng.normal(size=sites).astype(np.float32)),
        },
        coords={"neuroid_id": ("site", [f"s{i}" for i in range(sites)])},
        attrs={"surrogate_network": f"net{seed}"},
    )
    return weights_to_dataset(network, arch, {}), models


@pytest.fixture
def members() -> list[tuple[xr.Dataset, xr.Dataset]]:
    return [surrogate_member(seed) for seed in (1, 2, 3)]


def test_an_ensemble_predicts_the_mean_of_its_members(members) -> None:  # type: ignore[no-untyped-def]
    images, target = torch.rand(5, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1])
    ensemble = ensemble_response([w for w, _ in members], [m for _, m in members])
    each = torch.stack([surrogate_response(w, m)(images, target) for w, m in members])
    torch.testing.assert_close(ensemble(images, target), each.mean(dim=0))
    assert not torch.allclose(each[0], each.mean(dim=0), atol=1e-3)  # the members differ
    assert isinstance(ensemble_response([members[0][0]], [members[0][1]]), LinearSiteResponse)  # one: itself
    other_sites = members[1][1].assign_coords(neuroid_id=("site", ["x", "y", "z"]))
    with pytest.raises(ValueError, match="same sites"):
        ensemble_response([members[0][0], members[1][0]], [members[0][1], other_sites])


@pytest.fixture
def one_image() -> xr.Dataset:
    rng = np.random.default_rng(4)
    return make_stimuli(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8), ["img0", "img1"], ["a", "b"])


def test_a_round_attacks_the_ensembles_mean_response(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [w for w, _ in members], [m for _, m in members]
    settings = AttackSettings(steps=3, restarts=1, wide_ball_factor=1.0)
    result = attack_sites("img0", one_image, weights, models, settings, [0.5, 2.0], 0, 1)
    image = to_tensor(one_image["pixels"].sel(stimulus_id=["img0"]).values)
    sites = torch.arange(3)
    clean = torch.stack([surrogate_response(w, m)(image.expand(3, -1, -1, -1), sites) for w, m in members])
    np.testing.assert_allclose(result["site_clean"].values, clean.mean(dim=0).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(result["site_clean"].values, clean[0].numpy(), atol=1e-3)
    # the reported change is the ensemble's change on the shown (8-bit) image
    shown = result["perturbed"].isel(eps=1).sel(direction="increase").values
    after = ensemble_response(weights, models)(to_tensor(shown), sites)
    np.testing.assert_allclose(
        result["site_change"].isel(eps=1).sel(direction="increase").values,
        after.numpy() - result["site_clean"].values,
        rtol=1e-3,
        atol=1e-4,
    )
    assert result.attrs["ensemble"] == ["net1", "net2", "net3"] and result.attrs["warm_started"] == 0


def test_one_site_attack_serves_every_round_and_only_its_members_change_it(members, one_image) -> None:  # type: ignore[no-untyped-def]
    """Round 1 and a later round with the same members, settings and seeds attack alike; a
    round whose site models are another member's does not."""
    weights, models = [w for w, _ in members], [m for _, m in members]
    settings = AttackSettings(steps=3, restarts=1, wide_ball_factor=1.0)
    first = attack_sites("img0", one_image, weights, models, settings, [0.5, 2.0], 5, 6)
    again = attack_sites("img0", one_image, weights, models, settings, [0.5, 2.0], 5, 6)
    for name in ("site_clean", "site_change", "site_delta_norm", "site_random_change", "perturbed"):
        assert np.array_equal(first[name].values, again[name].values), name
    single = attack_sites("img0", one_image, weights[:1], models[:1], settings, [0.5, 2.0], 5, 6)
    assert not np.array_equal(single["site_change"].values, first["site_change"].values)
    assert "unit_change" not in first  # the network units are attack_units' alone


def test_a_rounds_attack_on_every_image_in_threads_equals_one_image_at_a_time(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [w for w, _ in members], [m for _, m in members]
    settings = AttackSettings(steps=3, restarts=1, wide_ball_factor=1.0)
    images = ["img0", "img1"]
    seeds = [(7, 8), (9, 10)]
    threads_before = torch.get_num_threads()
    together = list(attack_round(images, one_image, weights, models, settings, [0.5, 2.0], seeds, workers=2))
    assert torch.get_num_threads() == threads_before  # the workers' one thread each is undone
    for image, (start, baseline), result in zip(images, seeds, together, strict=True):
        alone = attack_sites(image, one_image, weights, models, settings, [0.5, 2.0], start, baseline)
        assert result.attrs["stimulus_id"] == image
        for name in ("site_change", "site_random_change", "perturbed"):
            assert np.array_equal(result[name].values, alone[name].values), name
    assert not np.array_equal(together[0]["perturbed"].values, together[1]["perturbed"].values)
    with pytest.raises(ValueError, match="one per image"):
        next(attack_round(images, one_image, weights, models, settings, [0.5, 2.0], seeds[:1]))


def test_a_warm_started_round_never_falls_below_the_previous_rounds_change(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [members[0][0]], [members[0][1]]
    eps = [0.5, 2.0]
    earlier = attack_sites(
        "img0", one_image, weights, models, AttackSettings(steps=20, restarts=1, wide_ball_factor=1.0), eps, 0, 1
    )
    short = AttackSettings(steps=1, restarts=1, wide_ball_factor=1.0)
    warm = attack_sites("img0", one_image, weights, models, short, eps, 7, 8, previous=earlier)
    cold = attack_sites("img0", one_image, weights, models, short, eps, 7, 8)
    sign = xr.DataArray(list(DIRECTION_SIGNS), dims="direction", coords={"direction": list(DIRECTIONS)})
    achieved = {
        name: (sign * ds["site_change"]).values for name, ds in [("earlier", earlier), ("warm", warm), ("cold", cold)]
    }
    assert bool((achieved["warm"] >= achieved["earlier"] - 1e-5).all())
    assert achieved["warm"].mean() > achieved["cold"].mean()  # one step from scratch gets less
    assert warm.attrs["warm_started"] == 1
    with pytest.raises(ValueError, match="img1"):
        attack_sites("img1", one_image, weights, models, short, eps, 7, 8, previous=earlier)


def round_recording(stimulus_ids: list[str], sites: list[str]) -> xr.Dataset:
    """Two repetitions of every image at every site."""
    ids = [stimulus for stimulus in stimulus_ids for _ in range(2)]
    response = np.ones((len(ids), len(sites)), np.float32)
    return make_recordings(response, ids, [0, 1] * len(stimulus_ids), sites, "IT", "M1")


def test_a_rounds_table_must_cover_the_rounds_images_and_only_them_at_the_clean_sites() -> None:
    shown = make_stimuli(np.zeros((3, 2, 2, 3), np.uint8), ["r2_clean0", "r2_pert0", "r2_rand0"], ["c"] * 3)
    shown.attrs["round"] = 2
    clean = round_recording(["a", "b"], ["s1", "s2", "s3"])
    modelled = ["s1", "s2"]  # s3 is recorded but not reliable enough to model
    table = "round2.csv"
    good = round_recording(["r2_rand0", "r2_clean0", "r2_pert0"], ["s2", "s1"])  # any order, s3 left out
    assert check_round_recordings(good, shown, clean, modelled, table) is good
    every_site = round_recording(["r2_rand0", "r2_clean0", "r2_pert0"], ["s1", "s2", "s3"])
    assert check_round_recordings(every_site, shown, clean, modelled, table) is every_site
    with pytest.raises(KeyError, match=r"round2\.csv: no recordings of 1 of the round's 3 images, e.g. \['r2_rand0'\]"):
        check_round_recordings(round_recording(["r2_clean0", "r2_pert0"], ["s1", "s2"]), shown, clean, modelled, table)
    another_round = round_recording(["r2_clean0", "r2_pert0", "r2_rand0", "r1_pert4"], ["s1", "s2"])
    with pytest.raises(KeyError, match=r"1 stimulus ids are not images of this round's stimulus set \(rig/round2/\)"):
        check_round_recordings(another_round, shown, clean, modelled, table)
    other_sites = round_recording(["r2_clean0", "r2_pert0", "r2_rand0"], ["s1", "s9"])
    with pytest.raises(
        KeyError, match=r"1 of the 2 sites the loop attacks are missing, e.g. \['s2'\]; 1 sites are not in"
    ):
        check_round_recordings(other_sites, shown, clean, modelled, table)
