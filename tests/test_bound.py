"""A tighter bound on the brain: transfer-aware attacks on site models, fine-tuning the
surrogate between rounds (`loop.refit: network`), and off-target specificity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from test_attack import ReluUnits, attack, quantised_norm, random_images
from test_loop import surrogate_member

from neuroattack.analysis.sensitivity import by_round, noise_corrected_squared_change
from neuroattack.analysis.specificity import perturbation_changes, specificity
from neuroattack.attacks.engine import resize_and_pad
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_sites, attack_units
from neuroattack.config import science
from neuroattack.config_checks import config_problems
from neuroattack.data.recordings import make_recordings
from neuroattack.data.stimuli import make_stimuli
from neuroattack.figures.specificity import figure8
from neuroattack.loop import refit
from neuroattack.loop.finetune import FinetuneSettings, finetune, held_out_groups, trainable_parameters
from neuroattack.loop.responses import EVERY_SITE_DIMS, round_responses
from neuroattack.loop.stimulus_set import round_stimulus_set
from neuroattack.networks.build import build_network, network_from_dataset
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import infer

TRANSFER = {"input_diversity": 0.5, "momentum": 0.9}

# --- transfer-aware attacks --------------------------------------------------------------


def test_resize_and_pad_keeps_the_size_and_puts_the_image_where_drawn() -> None:
    images = torch.ones(2, 3, 8, 8)
    shown = resize_and_pad(images, size=6, top=1, left=2)
    assert shown.shape == images.shape
    torch.testing.assert_close(shown[:, :, 1:7, 2:8], torch.ones(2, 3, 6, 6))
    assert float(shown.sum()) == pytest.approx(2 * 3 * 36)  # black outside it


@pytest.mark.parametrize("options", [TRANSFER, {"input_diversity": 1.0}, {"momentum": 0.9}])
def test_transfer_aware_attacks_stay_in_the_ball_and_do_not_depend_on_chunking(options: dict[str, float]) -> None:
    network, images = ReluUnits(seed=5), random_images(8, seed=9)
    eps = torch.tensor([0.3, 1.0]).repeat(4)
    whole = attack(network, images, eps, restarts=2, chunk_rows=1024, stall_steps=3, **options)
    chunked = attack(network, images, eps, restarts=2, chunk_rows=3, stall_steps=3, **options)
    assert torch.equal(chunked.perturbed, whole.perturbed)
    assert bool((quantised_norm(whole.perturbed, images) <= eps + 1e-6).all())
    plain = attack(network, images, eps, restarts=2, chunk_rows=1024, stall_steps=3)
    assert not torch.equal(plain.perturbed, whole.perturbed)  # the option shapes the search


def test_bad_transfer_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="momentum"):
        AttackSettings(momentum=1.5)
    with pytest.raises(ValueError, match="geometric"):
        AttackSettings(input_diversity=0.5, schedule="paper")
    config = yaml.safe_load((Path(__file__).parent.parent / "config/tiny.yaml").read_text())
    config["attack"].update(schedule="paper", momentum=0.9)
    problems = [p for p in config_problems(config) if "attack.momentum" in p]
    assert problems and "geometric" in problems[0]


def test_transfer_options_that_are_off_trigger_no_rerun() -> None:
    section = {"steps": 10, "eps": [1.0]}
    assert science({**section, "input_diversity": 0, "momentum": 0.0}) == science(section)
    assert science({**section, "momentum": 0.9}) != science(section)


def attack_inputs() -> tuple[dict[str, object], dict[str, object]]:
    """The inputs of the sites' attack and of the network units' attack on one image: a
    stimulus set, one network with its features, a site model."""
    weights, models = surrogate_member(4, sites=2)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    stimuli = make_stimuli(pixels, [f"img{i}" for i in range(6)], list("aabbcc"))
    activation = infer(network_from_dataset(weights).features, pixels)
    features = xr.Dataset(
        {"activation": (("stimulus_id", "unit"), activation)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "unit": np.arange(activation.shape[1])},
        attrs={"network": "net"},
    )
    common = {"stimulus_id": "img1", "stimuli": stimuli, "eps_grid": [0.5, 2.0], "seed": 3, "baseline_seed": 2}
    sites = {**common, "surrogates": [weights], "site_models": [models]}
    units = {
        **common,
        "networks": {"net": weights},
        "features": {"net": features},
        "units_per_network": 3,
        "unit_seed": 1,
    }
    return sites, units


def test_transfer_options_shape_the_sites_attacks_and_leave_network_units_bit_identical() -> None:
    sites, units = attack_inputs()
    base = AttackSettings(steps=6, restarts=2, wide_ball_factor=1.0, stall_steps=2)
    shaping = AttackSettings(**{**vars(base), **TRANSFER})
    plain, shaped = (attack_units(settings=settings, **units) for settings in (base, shaping))  # type: ignore[arg-type]
    for name in ("unit_change", "unit_delta_norm", "unit_random_change", "unit_clean"):
        assert np.array_equal(plain[name].values, shaped[name].values), name
    plain, shaped = (attack_sites(settings=settings, **sites) for settings in (base, shaping))  # type: ignore[arg-type]
    assert not np.array_equal(plain["perturbed"].values, shaped["perturbed"].values)


# --- fine-tuning the surrogate ------------------------------------------------------------


SMALL = Architecture(widths=(8, 16), blocks=(1, 1), num_classes=3)


def simulated_brain_data(images: int = 240, sites: int = 5) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """A surrogate network, images, and a simulated brain's responses to them: a softplus readout
    of another network's features (the brain is never the surrogate)."""
    torch.manual_seed(11)
    brain = build_network(SMALL).eval()
    torch.manual_seed(12)
    surrogate = build_network(SMALL).eval()
    pixels = np.random.default_rng(0).integers(0, 256, (images, 16, 16, 3), dtype=np.uint8)
    readout = torch.randn(sites, 16, generator=torch.Generator().manual_seed(3))
    drive = torch.as_tensor(infer(brain.features, pixels)) @ readout.T
    return surrogate, pixels, torch.nn.functional.softplus(drive).numpy()


def test_finetuning_lowers_the_held_out_error_on_a_simulated_brain() -> None:
    surrogate, pixels, responses = simulated_brain_data()
    held_out = held_out_groups([f"clean{i // 4}" for i in range(len(pixels))], 0.25, seed=1)
    settings = FinetuneSettings(epochs=14, patience=4, anchor=0.0)
    result = finetune(surrogate, lambda network: network.features, pixels, responses, held_out, settings, seed=2)
    assert result.best_epoch > 0
    assert result.held_out_error[result.best_epoch] < 0.95 * result.held_out_error[0]
    assert min(result.held_out_error) == result.held_out_error[result.best_epoch]
    again = finetune(surrogate, lambda network: network.features, pixels, responses, held_out, settings, seed=2)
    assert all(torch.equal(again.state[name], result.state[name]) for name in result.state)  # seeded
    start = surrogate.state_dict()
    assert any(not torch.equal(start[name], result.state[name]) for name in result.state)
    # the penalty keeps the weights nearer their start
    anchored = finetune(
        surrogate,
        lambda network: network.features,
        pixels,
        responses,
        held_out,
        FinetuneSettings(epochs=result.best_epoch, patience=99, anchor=100.0),
        seed=2,
    )

    def distance(state: dict[str, torch.Tensor]) -> float:
        return sum(float(((state[n].float() - start[n].float()) ** 2).sum()) for n, _ in surrogate.named_parameters())

    assert anchored.best_epoch == 0 or distance(anchored.state) < distance(result.state)


def test_held_out_images_are_whole_clean_images_with_every_image_made_from_them() -> None:
    groups = [f"clean{i % 10}" for i in range(100)]
    held = held_out_groups(groups, 0.2, seed=4)
    chosen = {g for g, h in zip(groups, held, strict=True) if h}
    assert len(chosen) == 2 and all(h == (g in chosen) for g, h in zip(groups, held, strict=True))


def test_fine_tuning_from_a_layer_trains_that_layer_and_the_ones_after_it_only() -> None:
    network = build_network(SMALL)
    names = [name for name, _ in trainable_parameters(network, "stages.1")]
    assert names and all(not name.startswith(("stem", "stages.0")) for name in names)
    assert [n for n, _ in trainable_parameters(network, None)] == [n for n, _ in network.named_parameters()]
    with pytest.raises(ValueError, match="no parameters under module 'stage9'"):
        trainable_parameters(network, "stage9")


def test_a_fine_tuned_surrogate_is_a_weights_file_of_the_same_network() -> None:
    weights, models = surrogate_member(1, sites=3)
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    ids = [f"img{i}" for i in range(12)]
    stimuli = make_stimuli(pixels, ids, list("aabbccddeeff"))
    activation = infer(network_from_dataset(weights).features, pixels)
    features = xr.Dataset(
        {"activation": (("stimulus_id", "unit"), activation)},
        coords={"stimulus_id": ids, "unit": np.arange(activation.shape[1])},
    )

    def recordings_of(names: list[str]) -> xr.Dataset:
        counts = rng.poisson(3.0, (4 * len(names), 3)).astype(float)
        return make_recordings(
            counts, np.tile(names, 4), np.repeat(np.arange(4), len(names)), ["s0", "s1", "s2"], "IT", "t"
        )

    clean = recordings_of(ids)
    attack = xr.Dataset(
        {
            "site_change": (("site", "eps", "direction"), rng.normal(size=(3, 1, 2))),
            "site_clean": ("site", np.ones(3)),
            "perturbed": (
                ("site", "eps", "direction", "y", "x", "channel"),
                rng.integers(0, 256, (3, 1, 2, 16, 16, 3), dtype=np.uint8),
            ),
        },
        coords={"eps": [1.0], "direction": ["increase", "decrease"], "neuroid_id": ("site", ["s0", "s1", "s2"])},
        attrs={"stimulus_id": "img0"},
    )
    shown = round_stimulus_set(stimuli, [attack], 1, seed=1, norm="l2")
    earlier = [(shown, recordings_of(shown["stimulus_id"].values.tolist()))]
    settings = FinetuneSettings(epochs=2, patience=2, held_out=0.25)
    tuned = refit.finetune_member(models, weights, features, clean, stimuli, earlier, settings, seed=3)
    assert set(tuned.data_vars) == set(weights.data_vars) and tuned.attrs[refit.FINETUNED_ROUNDS] == 1
    network_from_dataset(tuned)  # loads as the same architecture
    assert tuned.attrs["finetune_images"] == 12 + shown.sizes["stimulus_id"] - 1  # clean, perturbed, random
    with pytest.raises(ValueError, match="round 1 is never fine-tuned"):
        refit.finetune_member(models, weights, features, clean, stimuli, [], settings, seed=3)


# --- off-target specificity ---------------------------------------------------------------


def synthetic_responses(
    true_change: np.ndarray, clean_rate: np.ndarray, repetitions: int, rng: np.random.Generator
) -> xr.Dataset:
    """A round's responses from Poisson trials: `true_change` (target, image, eps, direction,
    recorded_site) of expected counts, `clean_rate` (image, site); the site models predict
    the sign of the target's change right and prefer `increase`."""
    sites, images, eps, _, _ = true_change.shape
    clean_trials = rng.poisson(np.broadcast_to(clean_rate, (repetitions, images, sites))).astype(float)
    perturbed_rate = clean_rate[None, :, None, None, :] + true_change
    trials = rng.poisson(np.broadcast_to(perturbed_rate, (repetitions, *perturbed_rate.shape))).astype(float)
    clean_mean = clean_trials.mean(0)[None, :, None, None, :]
    clean_variance = clean_trials.var(0, ddof=1)[None, :, None, None, :]
    mean, variance = trials.mean(0), trials.var(0, ddof=1)
    squared = noise_corrected_squared_change(mean, variance, repetitions, clean_mean, clean_variance, repetitions)
    own = np.einsum("tiedt->tied", mean - clean_mean)
    predicted = np.einsum("tiedt->tied", true_change) * np.array([1.0, 0.1])  # increase predicted larger
    dims = ("site", "image", "eps", "direction")
    return xr.Dataset(
        {
            "predicted_change": (dims, predicted),
            "recorded_change": (dims, own),
            "every_site_change": ((*dims, "recorded_site"), mean - clean_mean),
            "every_site_squared_change": ((*dims, "recorded_site"), squared),
            "every_site_true_change": ((*dims, "recorded_site"), true_change),
            "random_squared_change": (("site", "image", "eps"), squared[:, :, :, 0, 0] * 0 + 0.25),
        },
        coords={
            "eps": [0.5, 2.0][:eps],
            "direction": ["increase", "decrease"],
            "image": [f"i{k}" for k in range(images)],
        },
    )


def test_the_specificity_estimator_is_unbiased_on_synthetic_data_with_known_off_target_changes() -> None:
    rng = np.random.default_rng(5)
    sites, images = 6, 8
    true_change = rng.normal(0.0, 0.4, (sites, images, 2, 2, sites)) * np.array([0.5, 1.5])[None, None, :, None, None]
    target = np.abs(rng.normal(1.0, 0.2, (sites, images, 2, 2))) * np.array([1.0, 2.0])[None, None, :, None]
    for t in range(sites):
        true_change[t, :, :, :, t] = target[t]
    sigma = np.full(sites, 1.5)
    clean_rate = rng.uniform(4, 8, (images, sites))
    truth = perturbation_changes(synthetic_responses(true_change, clean_rate, 5, rng), sigma, truth=True)
    estimates, naive = [], []
    for _ in range(300):
        responses = synthetic_responses(true_change, clean_rate, 5, rng)
        values = perturbation_changes(responses, sigma)
        estimates.append([values["offtarget_squared"].mean(axis=(0, 1)), values["target"].mean(axis=(0, 1))])
        change = responses["every_site_change"].isel(direction=0).values
        plain = np.where(np.eye(sites, dtype=bool)[:, None, None, :], np.nan, change**2 / sigma**2)
        naive.append(np.nanmean(plain, axis=(0, 1, 3)))
    mean = np.mean(estimates, axis=0)
    spread = np.std(estimates, axis=0) / np.sqrt(len(estimates))
    expected = [truth["offtarget_squared"].mean(axis=(0, 1)), truth["target"].mean(axis=(0, 1))]
    assert np.all(np.abs(mean - expected) < 4 * spread + 1e-3), (mean, expected)
    assert np.all(np.mean(naive, axis=0) > expected[0] + 10 * spread[0])  # the naive square is biased up


def test_specificity_is_the_target_change_over_the_off_target_root_mean_square_and_figure8_draws_it() -> None:
    rng = np.random.default_rng(6)
    true_change = rng.normal(0.0, 0.3, (4, 5, 2, 2, 4))
    for t in range(4):
        true_change[t, :, :, :, t] = 2.0
    responses = synthetic_responses(true_change, rng.uniform(4, 8, (5, 4)), 200, rng)
    summary = specificity(responses, np.ones(4), bootstrap=50, seed=0)
    np.testing.assert_allclose(summary["specificity"], summary["target_change"] / summary["offtarget_change"])
    assert bool((summary["specificity_low"] <= summary["specificity_high"]).all())
    assert bool((summary["true_specificity"] > 3).all())  # aimed-at 2.0, others about 0.3
    np.testing.assert_allclose(summary["random_change"], 0.5)
    _, numbers = figure8(by_round([summary.assign_attrs(round=1), summary.assign_attrs(round=2)]))
    assert numbers.sizes["round"] == 2 and "true_offtarget_change" in numbers


def test_a_rounds_responses_hold_every_sites_change_under_every_perturbation() -> None:
    rng = np.random.default_rng(1)
    stimuli = make_stimuli(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), ["a", "b", "c", "d"], list("xxyy"))
    attacks = [
        xr.Dataset(
            {
                "site_clean": ("site", np.ones(3)),
                "site_change": (("site", "eps", "direction"), rng.normal(size=(3, 2, 2))),
                "perturbed": (
                    ("site", "eps", "direction", "y", "x", "channel"),
                    rng.integers(0, 256, (3, 2, 2, 8, 8, 3), dtype=np.uint8),
                ),
            },
            coords={
                "eps": [0.5, 2.0],
                "direction": ["increase", "decrease"],
                "neuroid_id": ("site", ["s0", "s1", "s2"]),
            },
            attrs={"stimulus_id": name},
        )
        for name in ("b", "d")
    ]
    shown = round_stimulus_set(stimuli, attacks, 1, seed=2, norm="l2")
    rate = np.full((shown.sizes["stimulus_id"], 3), 2.0)
    perturbed = shown["category"].values == "perturbed"
    target = np.array([int(s[1:]) if s else -1 for s in shown["target_neuroid_id"].values])
    eps_index = (shown["eps"].values == 2.0).astype(int)
    # site r's response to a perturbed image made for site t at eps e: 2 + t + 10 r + 100 e
    rate[perturbed] += target[perturbed, None] + 10 * np.arange(3)[None] + 100 * eps_index[perturbed, None]
    repetitions = 3
    recordings = make_recordings(
        np.tile(rate, (repetitions, 1)),
        np.tile(shown["stimulus_id"].values, repetitions),
        np.repeat(np.arange(repetitions), len(rate)),
        ["s0", "s1", "s2"],
        "IT",
        "t",
    )
    responses = round_responses(shown, recordings, attacks)
    change = responses["every_site_change"]
    assert change.dims == EVERY_SITE_DIMS
    expected = (
        np.arange(3)[:, None, None, None, None]
        + 10 * np.arange(3)[None, None, None, None, :]
        + 100 * np.arange(2)[None, None, :, None, None]
    )
    np.testing.assert_allclose(change.values, np.broadcast_to(expected, change.shape))
    np.testing.assert_allclose(responses["every_site_squared_change"].values, change.values**2)  # no trial noise
    diagonal = np.einsum("tiedt->tied", change.values)
    np.testing.assert_allclose(diagonal, responses["recorded_change"].values)


def test_the_change_error_counts_only_where_an_image_was_made_from_another() -> None:
    surrogate, pixels, responses = simulated_brain_data(images=80)
    held_out = held_out_groups([f"clean{i // 4}" for i in range(len(pixels))], 0.25, seed=1)
    made_from = (np.arange(len(pixels)) // 4) * 4  # every 4th image is clean, the next 3 made from it
    plain, with_changes, unpaired = (
        finetune(
            surrogate,
            lambda network: network.features,
            pixels,
            responses,
            held_out,
            FinetuneSettings(epochs=1, change_weight=weight),
            seed=2,
            partner=partner,
        ).held_out_error[0]
        for weight, partner in ((0.0, made_from), (1.0, made_from), (1.0, None))
    )
    assert with_changes > plain and unpaired == plain
