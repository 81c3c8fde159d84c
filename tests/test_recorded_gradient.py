"""loop.recorded_gradient: each site's gradient estimated from the changes earlier rounds
recorded, attacked beside the site model's own direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from test_loop import surrogate_member
from torch import Tensor, nn
from workflow_helpers import REPO

from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_sites
from neuroattack.brain.sitemodels import ensemble_response
from neuroattack.config_checks import config_problems
from neuroattack.data.recordings import make_recordings
from neuroattack.data.stimuli import make_stimuli
from neuroattack.geometry import LEVELS
from neuroattack.loop.recorded_gradient import (
    RecordedGradient,
    WithRecordedGradient,
    correction_weights,
    recorded_changes,
    ridge_gradient,
    round_means,
    site_gradients,
)
from neuroattack.loop.stimulus_set import round_stimulus_set
from neuroattack.networks.readouts import to_tensor


@pytest.fixture
def members() -> list[tuple[xr.Dataset, xr.Dataset]]:
    return [surrogate_member(seed) for seed in (1, 2, 3)]


@pytest.fixture
def one_image() -> xr.Dataset:
    rng = np.random.default_rng(4)
    return make_stimuli(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8), ["img0", "img1"], ["a", "b"])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_ridge_estimate_finds_a_linear_sites_gradient_from_its_recorded_changes() -> None:
    rng = np.random.default_rng(0)
    gradient = rng.normal(size=(2, 48))
    directions = rng.normal(size=(300, 48))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    changes = directions @ gradient.T
    estimate = ridge_gradient(directions, changes, penalty=1e-3)
    assert min(cosine(estimate[s], gradient[s]) for s in range(2)) > 0.999
    noisy = changes + rng.normal(scale=0.3 * changes.std(), size=changes.shape)
    noisy[:40, 1] = np.nan  # a site that missed some images: fitted on the rest
    estimate = ridge_gradient(directions, noisy, penalty=1.0)
    assert min(cosine(estimate[s], gradient[s]) for s in range(2)) > 0.9
    assert not ridge_gradient(directions, np.full_like(changes, np.nan), 1.0).any()  # nothing recorded: none


def test_the_correction_has_the_site_models_gradient_size_times_the_weight() -> None:
    surrogate = np.array([[3.0, 4.0], [1.0, 0.0], [2.0, 0.0]])
    estimate = np.array([[0.0, 2.0], [-5.0, 0.0], [0.0, 0.0]])
    weights = correction_weights(surrogate, estimate, weight=2.0)
    np.testing.assert_allclose(weights, [[0.0, 10.0], [-2.0, 0.0], [0.0, 0.0]])


def test_the_corrected_response_moves_along_the_site_model_and_the_estimate(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [w for w, _ in members], [m for _, m in members]
    response = ensemble_response(weights, models)
    image = to_tensor(one_image["pixels"].sel(stimulus_id=["img0"]).values)
    own = site_gradients(response, image, 3)
    correction = np.random.default_rng(2).normal(size=own.shape)
    corrected = WithRecordedGradient(response, correction, image)
    sites = torch.arange(3)
    at_clean = image.expand(3, -1, -1, -1)
    torch.testing.assert_close(corrected(at_clean, sites), response(at_clean, sites))
    np.testing.assert_allclose(site_gradients(corrected, image, 3), own + correction, rtol=1e-4, atol=1e-6)


def test_the_correction_is_linear_within_its_reach_and_stops_growing_beyond() -> None:
    clean = torch.zeros(1, 1, 2, 2)
    weights = np.array([[1.0, 2.0, 0.0, -1.0]])
    corrected = WithRecordedGradient(lambda images, target: torch.zeros(len(target)), weights, clean, reach=1.0)
    direction = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2) / 2**0.5  # unit norm; w . d = 3 / sqrt 2
    along = [float(corrected(clean + scale * direction, torch.zeros(1, dtype=torch.long))) for scale in (0.5, 1, 3)]
    np.testing.assert_allclose(along, [1.5 / 2**0.5, 3 / 2**0.5, 3 / 2**0.5], rtol=1e-6)


class LinearBrain(nn.Module):
    """Sites whose response is a fixed linear function of the image (a brain to record from)."""

    def __init__(self, gradient: Tensor) -> None:
        super().__init__()
        self.gradient = gradient

    def all_sites(self, images: Tensor) -> Tensor:
        return 2.0 + images.flatten(1) @ self.gradient.T


def recorded_round(stimuli: xr.Dataset, attacks: list[xr.Dataset], brain: LinearBrain, number: int, sites: list[str]):  # type: ignore[no-untyped-def]
    """A round's stimulus set and its noise-free recordings (two repetitions) from `brain`."""
    shown = round_stimulus_set(stimuli, attacks, number, seed=number, norm="l2")
    rates = brain.all_sites(to_tensor(shown["pixels"].values).double()).numpy()
    ids = shown["stimulus_id"].values
    recordings = make_recordings(np.tile(rates, (2, 1)), np.tile(ids, 2), np.repeat([0, 1], len(ids)), sites, "IT", "M")
    return shown, recordings


def test_a_round_recovers_a_linear_brains_gradient_from_what_it_recorded(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [w for w, _ in members], [m for _, m in members]
    sites = models[0]["neuroid_id"].values.astype(str).tolist()
    settings = AttackSettings(steps=3, restarts=1, wide_ball_factor=1.0)
    attacks = [
        attack_sites(image, one_image, weights, models, settings, [0.5, 2.0], 3, 4) for image in ("img0", "img1")
    ]
    side = one_image.sizes["y"]
    brain = LinearBrain(torch.as_tensor(np.random.default_rng(5).normal(size=(3, 3 * side * side))))
    rounds = round_means([recorded_round(one_image, attacks, brain, 1, sites)])
    recorded = recorded_changes(rounds, "img0", sites, eps=2.0)
    assert recorded.directions.shape == (3 * 2 + 1, 3 * side * side)  # every site's two directions and the random one
    # the directions are the shown 8-bit images minus the clean one; the changes, the brain's along them
    norms = np.linalg.norm(recorded.directions, axis=1)
    assert bool((norms <= 2.0 + 1e-6).all()) and bool((norms > 1.5).all())  # at eps 2 (8-bit rounded), none at 0.5
    np.testing.assert_allclose(recorded.changes, recorded.directions @ brain.gradient.numpy().T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no response to the clean image img9"):
        recorded_changes(rounds, "img9", sites, eps=2.0)


def test_a_refined_attack_stays_in_the_ball_and_is_the_same_whatever_the_chunking(members, one_image) -> None:  # type: ignore[no-untyped-def]
    weights, models = [w for w, _ in members], [m for _, m in members]
    sites = models[0]["neuroid_id"].values.astype(str).tolist()
    eps = [0.5, 2.0]
    settings = AttackSettings(steps=6, restarts=2, wide_ball_factor=1.0)
    attacks = [attack_sites(image, one_image, weights, models, settings, eps, 3, 4) for image in ("img0", "img1")]
    side = one_image.sizes["y"]
    brain = LinearBrain(torch.as_tensor(np.random.default_rng(6).normal(size=(3, 3 * side * side))))
    rounds = round_means([recorded_round(one_image, attacks, brain, 1, sites)])
    refine = RecordedGradient(weight=2.0, eps=2.0, ridge=1.0)

    def attacked(chunk_rows: int) -> xr.Dataset:
        chunked = AttackSettings(steps=6, restarts=2, wide_ball_factor=1.0, chunk_rows=chunk_rows)
        return attack_sites(
            "img0",
            one_image,
            weights,
            models,
            chunked,
            eps,
            7,
            8,
            refine=lambda response, image, stimulus_id, neuroids: refine.corrected(
                response, image, stimulus_id, neuroids, rounds
            ),
        )

    whole, one_row = attacked(1024), attacked(1)
    assert whole.attrs["refined_by_recordings"] == 1
    assert np.array_equal(whole["perturbed"].values, one_row["perturbed"].values)
    plain = attack_sites("img0", one_image, weights, models, settings, eps, 7, 8)
    assert not np.array_equal(whole["perturbed"].values, plain["perturbed"].values)  # the correction steers it
    clean = one_image["pixels"].sel(stimulus_id="img0").values.astype(np.float64)
    shown = whole["perturbed"].values.astype(np.float64)  # (site, eps, direction, y, x, channel)
    norms = np.sqrt((((shown - clean) / LEVELS) ** 2).sum(axis=(3, 4, 5)))
    assert bool((norms <= np.asarray(eps)[None, :, None] + 1e-6).all())

    # toward a linear brain, the refined attack moves it further than the site models alone do
    def brain_change(result: xr.Dataset) -> float:
        """The brain's mean change at each attacked site, signed by the attack's direction."""
        moved = brain.all_sites(to_tensor(result["perturbed"].values.reshape(-1, side, side, 3)).double()).numpy()
        own = moved.reshape(3, 2, 2, 3)[np.arange(3), :, :, np.arange(3)]  # (site, eps, direction): its own response
        before = brain.all_sites(to_tensor(clean[None].astype(np.uint8)).double()).numpy()[0]
        return float(((own - before[:, None, None]) * np.array([1.0, -1.0])).mean())

    assert brain_change(whole) > brain_change(plain)


def test_its_eps_must_be_one_of_the_attacks() -> None:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["loop"]["recorded_gradient"] = {"weight": 2.0, "eps": 0.7}
    problems = config_problems(config)
    assert any(p.startswith("loop.recorded_gradient.eps = 0.7 is not one of attack.eps") for p in problems), problems
    config["loop"]["recorded_gradient"] = {"weight": 2.0, "eps": 1.0}
    assert not [p for p in config_problems(config) if "recorded_gradient" in p]
