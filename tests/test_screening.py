"""Surrogate screening: CKA, Brain-Score-convention predictivity, the noise-corrected
population change, and the choice of `surrogate.network: auto`."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
import xarray as xr
import yaml
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import StratifiedShuffleSplit
from workflow_helpers import REPO, job_counts, snakemake

from neuroattack import figures, io
from neuroattack.analysis import cka, criteria, predictivity, screening, transfer
from neuroattack.analysis.criteria import Score


def synthetic(seed: int = 0, stimuli: int = 80, units: int = 40, sites: int = 9) -> tuple[np.ndarray, ...]:
    """Features, responses made from them (plus noise), categories (8 of 10 stimuli each)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((stimuli, units))
    responses = features @ rng.standard_normal((units, sites)) * 0.3 + rng.standard_normal((stimuli, sites))
    categories = np.repeat([f"c{i}" for i in range(stimuli // 10)], 10)
    return features, responses, categories


def test_predictivity_matches_a_direct_scikit_learn_computation() -> None:
    features, responses, categories = synthetic()
    settings = predictivity.PredictivitySettings(components=25, splits=10, test_fraction=0.1)
    correlations, components = predictivity.split_correlations(features, responses, categories, settings, seed=3)
    score = predictivity.predictivity(correlations, np.array([0.8]), draws=10, seed=0)
    # Brain-Score's recipe, written out: 10 stratified 90/10 splits, PLS(25, scale=False),
    # Pearson r per site on the held-out stimuli, median over sites, mean over splits.
    splitter = StratifiedShuffleSplit(n_splits=10, train_size=0.9, random_state=3)
    per_split = []
    for train, test in splitter.split(features, categories):
        predicted = (
            PLSRegression(n_components=25, scale=False).fit(features[train], responses[train]).predict(features[test])
        )
        per_site = [scipy.stats.pearsonr(predicted[:, s], responses[test, s])[0] for s in range(responses.shape[1])]
        per_split.append(np.median(per_site))
    direct = float(np.mean(per_split))
    assert components == 25
    assert abs(score["predictivity_r"] - direct) < 1e-6
    assert abs(score["predictivity"] - direct**2 / 0.8) < 1e-6
    assert score["predictivity_r_low"] <= score["predictivity_r"] <= score["predictivity_r_high"]


def test_pls_components_are_capped_at_what_the_data_allow() -> None:
    features, responses, categories = synthetic(units=6)
    settings = predictivity.PredictivitySettings(components=25, splits=3, test_fraction=0.1)
    _, components = predictivity.split_correlations(features, responses, categories, settings, seed=0)
    assert components == 6
    assert predictivity.usable_components(25, train_rows=12, features=100) == 11


def test_ceiling_is_the_spearman_brown_corrected_median_split_half_correlation() -> None:
    rng = np.random.default_rng(1)
    stimuli, trials, noise = 1000, 20, 1.0
    signal = rng.standard_normal((stimuli, 1, 5))
    repetitions = signal + noise * rng.standard_normal((stimuli, trials, 5))
    ceilings = predictivity.ceiling_per_split(repetitions, splits=10, seed=0)
    assert ceilings.shape == (10,)
    # theory for these data: a half's mean (10 trials) has noise variance noise^2 / 10, so the
    # halves of site j correlate as v_j / (v_j + noise^2 / 10), v_j its signal's variance over
    # the stimuli; Spearman-Brown 2r / (1 + r) gives the full mean's reliability (20/21 for v = 1)
    variance = signal[:, 0].var(axis=0)
    half = variance / (variance + noise**2 / (trials / 2))
    theory = float(np.median(2 * half / (1 + half)))
    without_spearman_brown = float(np.median(half))
    assert theory == pytest.approx(20 / 21, abs=0.005)
    assert abs(float(ceilings.mean()) - theory) < 0.005  # measured 0.9532 against 0.9518
    assert theory - without_spearman_brown > 0.04  # 0.908: the tolerance tells the two apart


@pytest.mark.parametrize("form", ["debiased", "biased"])
def test_cka_is_one_for_identical_and_invariant_to_scaling_and_rotation(form: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 12))
    y = x @ rng.standard_normal((12, 7)) + 0.5 * rng.standard_normal((50, 7))
    rotation, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    base = cka.linear_cka(x, y, form)
    assert cka.linear_cka(x, x, form) == pytest.approx(1.0, abs=1e-12)
    assert cka.linear_cka(3.7 * x, y, form) == pytest.approx(base, abs=1e-12)
    assert cka.linear_cka(x @ rotation, 0.2 * y, form) == pytest.approx(base, abs=1e-12)
    assert cka.linear_cka(x, rng.standard_normal((50, 7)), form) < base < 1.0
    value, low, high = cka.cka_interval(x, y, form=form)
    assert value == base and low < value < high


@pytest.mark.parametrize("form", ["debiased", "biased"])
def test_each_jackknife_sample_is_the_cka_of_the_stimuli_left(form: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((12, 5))
    y = x @ rng.standard_normal((5, 3)) + rng.standard_normal((12, 3))
    k, l_ = x @ x.T, y @ y.T
    deleted = cka._leave_one_out_hsic(k, l_, form) / np.sqrt(
        cka._leave_one_out_hsic(k, k, form) * cka._leave_one_out_hsic(l_, l_, form)
    )
    direct = [cka.linear_cka(np.delete(x, i, axis=0), np.delete(y, i, axis=0), form) for i in range(12)]
    np.testing.assert_allclose(deleted, direct, rtol=1e-10)


def related_population(
    rng: np.random.Generator, strength: float, units: int = 10, sites: int = 5
) -> tuple[np.ndarray, float]:
    """Responses y = x A + unit noise of features x ~ N(0, I): the weights A and the population
    CKA, ||Cov(x, y)||_F^2 / (||Cov(x)||_F ||Cov(y)||_F) = ||A||_F^2 / (sqrt(units) ||A'A + I||_F)."""
    weights = strength * rng.standard_normal((units, sites))
    population = np.linalg.norm(weights) ** 2 / (np.sqrt(units) * np.linalg.norm(weights.T @ weights + np.eye(sites)))
    return weights, float(population)


def test_the_cka_interval_holds_its_estimate_on_unrelated_and_related_data() -> None:
    rng = np.random.default_rng(9)
    unrelated = rng.standard_normal((40, 2000)), rng.standard_normal((40, 300))
    weights, _ = related_population(rng, strength=0.5, units=300, sites=30)
    features = rng.standard_normal((40, 300))
    related = features, features @ weights + rng.standard_normal((40, 30))
    for x, y in (unrelated, related):
        for form in ("debiased", "biased"):
            value, low, high = cka.cka_interval(x, y, form)
            assert low < value < high, (form, value, low, high)
    assert cka.cka_interval(*unrelated)[2] < 0.3  # a resampling that pairs copies: about [0.90, 0.95]


@pytest.mark.parametrize(("strength", "lowest", "highest"), [(0.2, 0.91, 0.99), (0.0, 0.91, 1.0)])
def test_the_cka_interval_covers_the_population_value_about_95_percent_of_the_time(
    strength: float, lowest: float, highest: float
) -> None:
    """400 samples of 40 stimuli: a correct 95% interval covers the population CKA in 380 +- 9
    of them. The jackknife is known to be conservative where the HSIC is degenerate (unrelated
    data: 99.5% here), so only the lower bound is tight there. A bootstrap that pairs a
    stimulus with its own copy covers it in about 62% (related) and 7% (unrelated) of the samples."""
    rng = np.random.default_rng(10)
    weights, population = related_population(rng, strength)
    covered = []
    for _ in range(400):
        x = rng.standard_normal((40, weights.shape[0]))
        _, low, high = cka.cka_interval(x, x @ weights + rng.standard_normal((40, weights.shape[1])))
        covered.append(low <= population <= high)
    assert lowest <= np.mean(covered) <= highest, np.mean(covered)


def u_statistic_hsic(k: np.ndarray, l_: np.ndarray) -> float:
    """The unbiased HSIC as its definition: the mean over ordered 4-tuples of distinct stimuli
    of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq (Song et al. 2012)."""
    values = [
        k[i, j] * l_[i, j] + k[i, j] * l_[q, r] - 2 * k[i, j] * l_[i, q]
        for i, j, q, r in itertools.permutations(range(len(k)), 4)
    ]
    return float(np.mean(values))


def test_the_debiased_cka_is_the_unbiased_hsic_estimator_and_unlike_the_biased_one_no_drift() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    k, l_ = x @ x.T, y @ y.T
    direct = u_statistic_hsic(k, l_) / np.sqrt(u_statistic_hsic(k, k) * u_statistic_hsic(l_, l_))
    assert cka.linear_cka(x, y) == pytest.approx(direct, rel=1e-10)
    # unrelated representations with many more units than stimuli: the biased form drifts
    # far above 0, the debiased one stays near it
    wide, narrow = rng.standard_normal((40, 2000)), rng.standard_normal((40, 20))
    assert cka.linear_cka(wide, narrow, "biased") > 0.5
    assert abs(cka.linear_cka(wide, narrow)) < 0.1
    with pytest.raises(ValueError, match=r"screening\.cka 'unbiased': use one of debiased, biased"):
        cka.linear_cka(x, y, "unbiased")


def scores(**criteria: list[float]) -> xr.Dataset:
    return xr.Dataset(
        {name: ("candidate", values) for name, values in criteria.items()}, coords={"candidate": ["a", "b", "c"]}
    )


def test_auto_picks_the_best_candidate_under_the_criterion() -> None:
    table = scores(cka=[0.2, 0.9, 0.5], predictivity=[0.6, 0.1, np.nan], transfer=[np.nan] * 3)
    assert screening.choose(table, "cka") == "b"
    assert screening.choose(table, "predictivity") == "a"
    with pytest.raises(ValueError, match=r"no candidate has a finite transfer score.*screening.criterion"):
        screening.choose(table, "transfer")
    with pytest.raises(ValueError, match=r"screening\.criterion 'rsa'"):
        screening.choose(table, "rsa")


def test_the_network_that_made_the_responses_wins_on_cka_and_predictivity() -> None:
    source, responses, categories = synthetic(seed=4, units=30)
    unrelated = np.random.default_rng(5).standard_normal(source.shape)
    settings = predictivity.PredictivitySettings(components=10, splits=5, test_fraction=0.1)
    table: dict[str, list[float]] = {"cka": [], "predictivity": []}
    for features in (unrelated, source):
        table["cka"].append(cka.linear_cka(features, responses))
        correlations, _ = predictivity.split_correlations(features, responses, categories, settings, seed=0)
        table["predictivity"].append(predictivity.predictivity(correlations, np.array([1.0]), 10, 0)["predictivity"])
    named = xr.Dataset({k: ("candidate", v) for k, v in table.items()}, coords={"candidate": ["unrelated", "source"]})
    assert screening.choose(named, "cka") == "source"
    assert screening.choose(named, "predictivity") == "source"


def test_the_layer_that_made_the_responses_is_the_best_layer_and_its_features_are_chosen() -> None:
    source, responses, categories = synthetic(seed=4, units=30)
    settings = predictivity.PredictivitySettings(components=10, splits=5, test_fraction=0.1)
    rng = np.random.default_rng(6)
    layers = {"stages.0": rng.standard_normal(source.shape), "stages.1": source, "penultimate": source[:, :3]}
    per_layer: dict[str, dict[str, Score]] = {"net": {}, "other": {"penultimate": Score(0.2, 0.1, 0.3)}}
    for layer, features in layers.items():
        correlations, _ = predictivity.split_correlations(features, responses, categories, settings, seed=0)
        measured = predictivity.predictivity(correlations, np.array([1.0]), 10, 0)
        per_layer["net"][layer] = Score(
            measured["predictivity"], measured["predictivity_low"], measured["predictivity_high"]
        )
    scores = screening.layer_scores(per_layer, ["other", "net"])
    assert scores["layer"].values.tolist() == ["stages.0", "stages.1", "penultimate"]  # the scored one's order
    assert scores["best_layer"].values.tolist() == ["penultimate", "stages.1"]
    assert np.isnan(scores["layer_predictivity"].sel(candidate="other", layer="stages.0"))
    ids = [f"s{i}" for i in range(len(source))]
    files = {
        layer: xr.Dataset(
            {"activation": (("stimulus_id", "unit"), values)},
            coords={"stimulus_id": ids},
            attrs={"network": "net", "layer": layer},
        )
        for layer, values in layers.items()
    }
    chosen = screening.best_layer_features(scores, "net", files)
    assert chosen.attrs["layer"] == "stages.1" and "predictivity" in chosen.attrs["layer_chosen_by"]
    np.testing.assert_array_equal(chosen["activation"].values, source)
    with pytest.raises(ValueError, match=r"network net: the screening chose layer 'stages.1', but no features"):
        screening.best_layer_features(scores, "net", {"penultimate": files["penultimate"]})


def test_the_noise_corrected_population_change_is_unbiased() -> None:
    rng = np.random.default_rng(6)
    images, repetitions, sites = 400, 10, 8
    sigma = np.full(sites, 2.0)
    clean = 5 + 3 * rng.standard_normal((images, repetitions, sites))
    same = 5 + 3 * rng.standard_normal((images, repetitions, sites))
    shifted = 6 + 3 * rng.standard_normal((images, repetitions, sites))  # change 1 = 0.5 s.d.
    assert abs(transfer.noise_corrected_change(clean, same, sigma).mean()) < 0.05
    assert transfer.noise_corrected_change(clean, shifted, sigma).mean() == pytest.approx(0.25, abs=0.06)
    # the naive estimate, |mean change|^2, is biased up by the noise of the means
    naive = np.mean(np.square((same.mean(axis=1) - clean.mean(axis=1)) / sigma))
    assert naive > 0.3
    value, low, high = transfer.population_change(transfer.noise_corrected_change(clean, shifted, sigma), 200, 0)
    assert low <= value <= high and value == pytest.approx(0.5, abs=0.07)


def test_own_site_takes_each_perturbed_images_target_site() -> None:
    values = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3)
    own = transfer.own_site(values)
    assert own.shape == (2, 3, 2)
    assert own[1, 2, 0] == values[1, 2, 0, 2] and own[0, 1, 1] == values[0, 1, 1, 1]


REFERENCE = Path(__file__).parent / "brainscore_reference" / "predictivity_reference.nc"


def test_predictivity_and_ceiling_agree_with_brainscores_own_metric() -> None:
    """brainscore-vision cannot be installed beside the pinned set (it needs numpy < 2): its numbers
    were computed by brainscore_reference/make_predictivity_reference.py in a separate environment."""
    reference = xr.open_dataset(REFERENCE, engine="netcdf4").load()
    settings = predictivity.PredictivitySettings(components=25, splits=10, test_fraction=0.1)
    correlations, components = predictivity.split_correlations(
        reference["features"].values,
        reference["repetitions"].values.mean(axis=1),
        reference["category"].values,
        settings,
        seed=reference.attrs["random_state"],
    )
    ceilings = predictivity.ceiling_per_split(reference["repetitions"].values, 10, seed=reference.attrs["random_state"])
    score = predictivity.predictivity(correlations, ceilings, draws=10, seed=0)
    assert components == 25
    assert abs(score["predictivity_r"] - float(reference["brainscore_r"])) < 1e-6
    assert abs(score["ceiling"] - float(reference["brainscore_ceiling"])) < 1e-6
    assert abs(score["predictivity"] - float(reference["brainscore_ceiled"])) < 1e-6


def test_brainscore_vision_itself_when_it_is_installed(tmp_path: Path) -> None:
    if importlib.util.find_spec("brainscore_vision") is None:
        pytest.skip(
            "brainscore-vision is not installed: it needs brainscore-core, which requires numpy < 2 and "
            "xarray < 2022.6, in conflict with envs/constraints.txt; its numbers are checked through "
            "brainscore_reference/predictivity_reference.nc instead"
        )
    import subprocess
    import sys

    script = Path(__file__).parent / "brainscore_reference" / "make_predictivity_reference.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=True)
    fresh = xr.open_dataset(tmp_path / REFERENCE.name, engine="netcdf4").load()
    committed = xr.open_dataset(REFERENCE, engine="netcdf4").load()
    for name in ("brainscore_r", "brainscore_ceiling", "brainscore_ceiled"):
        assert abs(float(fresh[name]) - float(committed[name])) < 1e-6, name


def test_closeness_to_the_brain_ranks_candidates_by_training_eps_distance() -> None:
    table = xr.Dataset(
        {
            "training_eps": ("candidate", [0.0, 0.25, 1.0, 3.0]),
            "cka": ("candidate", [0.4, 0.9, 0.5, 0.2]),  # closeness to eps 0.5: 0.25 first, then 0 and 1, then 3
            "predictivity": ("candidate", [0.9, 0.1, 0.5, 0.2]),
            "transfer": ("candidate", [np.nan] * 4),
        },
        coords={"candidate": ["a", "b", "c", "d"]},
    )
    closeness = screening.closeness_to_brain(table, brain_eps=0.5)
    assert closeness["distance_to_brain"].values.tolist() == [0.5, 0.25, 0.5, 2.5]
    assert closeness.attrs["closeness_rank_correlation_cka"] > 0.9
    assert closeness.attrs["closeness_rank_correlation_predictivity"] < 0.5
    assert np.isnan(closeness.attrs["closeness_rank_correlation_transfer"])


# --- in the workflow (the tiny config) -------------------------------------------------


@pytest.mark.slow
def test_the_tiny_run_screens_every_network_and_draws_figure5(tiny_run: Path) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    table = io.read_dataset(tiny_run / "screening/screening.nc", "screening")
    assert table["candidate"].values.tolist() == list(config["networks"])
    candidates = table["candidate"].values.tolist()
    for criterion in screening.CRITERIA:
        values = [float(v) for v in table[criterion].values]
        best = max(range(len(values)), key=lambda i: (values[i], -i))  # the highest, the first of equals
        assert table.attrs[f"pick_by_{criterion}"] == candidates[best], (criterion, values)
    assert 1 <= table.attrs["pls_components"] <= 25
    for criterion in screening.CRITERIA:
        values = table[criterion].values
        assert np.isfinite(values).all(), criterion
        assert (table[f"{criterion}_low"].values <= values + 1e-6).all(), criterion
        assert (values <= table[f"{criterion}_high"].values + 1e-6).all(), criterion
    networks = table["transfer_relative"].sel(target=table["attacker"].values).values
    assert np.allclose(np.diag(networks), 1.0)
    assert np.isfinite(table["transfer_relative"].sel(target=transfer.BRAIN_TARGET).values).all()
    assert table.attrs["brain_training_eps"] == config["brain"]["network"]["eps"]
    assert (tiny_run / "figures/figure5.png").stat().st_size > 10_000
    plotted = io.read_dataset(tiny_run / "figures/figure5.nc")
    assert np.allclose(plotted["cka"].values, table["cka"].values)
    assert "layer_predictivity" not in table  # scored by layer only under surrogate.layer: auto
    # per-layer scores add a fifth panel: the scored network's layers only
    per_layer = {name: {"penultimate": Score(0.5, 0.4, 0.6)} for name in candidates}
    per_layer[candidates[-1]] = {"stem": Score(0.2, 0.1, 0.3), "penultimate": Score(0.6, 0.5, 0.7)}
    figure, _ = figures.figure5(table.merge(screening.layer_scores(per_layer, candidates)))
    assert len(figure.axes) == 5 + 1  # four panels, the heatmap's colour bar, predictivity by layer
    assert [label.get_text() for label in figure.axes[4].get_xticklabels()] == ["stem", "penultimate"]


@pytest.mark.slow
def test_auto_surrogate_fits_the_site_models_on_the_chosen_network(tiny_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run.parent.parent, workdir, symlinks=True)
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["surrogate"]["network"] = "auto"
    config["screening"]["criterion"] = "cka"
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/tiny/rounds/round1/site_models.nc"
    run = snakemake(workdir, "--cores", "2", target, configfile=str(path))
    assert run.returncode == 0, run.stderr[-4000:]
    jobs = run.stdout + run.stderr
    assert "rule chosen_surrogate" in jobs and "rule screening" not in jobs  # the screening is reused
    chosen = io.read_dataset(workdir / "results/tiny/screening/screening.nc").attrs["pick_by_cka"]
    assert io.read_dataset(workdir / target).attrs["surrogate_network"] == chosen


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"screening.images": 4}, "screening.images = 4 is more than attack.images = 3; lower it to at most 3"),
        ({"surrogate.network": "elsewhere"}, "name a network of the config, or auto"),
    ],
)
def test_screening_settings_are_checked_at_start(tmp_path: Path, change: dict, message: str) -> None:  # type: ignore[type-arg]
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    for dotted, value in change.items():
        section, key = dotted.split(".")
        config[section][key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=str(path))
    assert run.returncode != 0 and message in run.stdout + run.stderr, run.stdout + run.stderr


def test_an_auto_surrogate_adds_one_job_that_copies_the_pick(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["surrogate"]["network"] = "auto"
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(config))
    auto = job_counts(snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=str(path)).stdout)
    named = job_counts(snakemake(tmp_path, "--dry-run", "--cores", "2").stdout)
    assert auto.pop("chosen_surrogate") == 1 and auto.pop("total") == named.pop("total") + 1
    assert auto == named


def test_an_auto_layer_scores_the_surrogates_layers_and_fits_on_the_best(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["surrogate"].update({"layer": "auto", "layers": ["stem", "stages.0"]})
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(config))
    auto = job_counts(snakemake(tmp_path, "--dry-run", "--cores", "2", configfile=str(path)).stdout)
    named = job_counts(snakemake(tmp_path, "--dry-run", "--cores", "2").stdout)
    assert auto.pop("best_layer_features") == 1  # the surrogate's (the tiny config has no ensemble)
    assert auto.pop("features") == named.pop("features") + 2  # the surrogate at stem and stages.0
    assert auto.pop("total") == named.pop("total") + 3
    assert auto == named
    config["surrogate"]["layers"] = []
    path.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile=str(path))
    assert (
        run.returncode != 0 and "surrogate.layer is auto but surrogate.layers names no layer" in run.stdout + run.stderr
    )


def test_the_layer_perturbations_are_exported_as_a_stimulus_set_for_the_rig(tmp_path: Path) -> None:
    from neuroattack.data.stimuli import make_stimuli, write_stimulus_set

    rng = np.random.default_rng(7)
    stimuli = make_stimuli(rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8), ["a", "b", "c", "d"], list("xxyy"))
    layer = rng.integers(0, 255, (2, 2, 8, 8, 3), dtype=np.uint8)
    table = xr.Dataset(
        {"layer_perturbed": (("candidate", "image", "y", "x", "channel"), layer)},
        coords={"candidate": ["net1", "net2"], "image": ["c", "a"]},
        attrs={"transfer_eps": 0.5},
    )
    shown = transfer.layer_stimulus_set(table, stimuli)
    assert shown["stimulus_id"].values.tolist() == [
        "c",
        "a",
        "c__layer_net1__eps0.5",
        "a__layer_net1__eps0.5",
        "c__layer_net2__eps0.5",
        "a__layer_net2__eps0.5",
    ]
    assert np.array_equal(shown["pixels"].values[0], stimuli["pixels"].sel(stimulus_id="c").values)
    assert np.array_equal(shown["pixels"].values[5], layer[1, 1])
    assert shown["network"].values.tolist()[2:] == ["net1", "net1", "net2", "net2"]
    write_stimulus_set(shown, tmp_path / "set.csv", tmp_path / "set.zip")
    assert (tmp_path / "set.csv").read_text().count(",perturbed,") == 4


def test_every_criterion_the_config_names_is_in_the_registry_and_scores_with_one_signature() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert list(criteria.CRITERIA) == schema["properties"]["screening"]["properties"]["criterion"]["enum"]
    features, responses, categories = synthetic(seed=11)
    settings = criteria.CriterionSettings(
        bootstrap=50, seed=0, predictivity=predictivity.PredictivitySettings(components=10, splits=3, test_fraction=0.1)
    )
    changes = np.random.default_rng(12).standard_normal(20) + 1.0
    evidence = criteria.Evidence(responses, categories, np.array([0.9]), {("net", "stages.1"): changes}, settings)
    at_layer = criteria.Representation("net", "stages.1", features)
    for name, criterion in criteria.CRITERIA.items():
        score = criterion(at_layer, evidence)
        assert score.low <= score.value <= score.high, name
    assert criteria.CRITERIA["cka"](at_layer, evidence).value == cka.linear_cka(features, responses)
    assert criteria.CRITERIA["transfer"](at_layer, evidence).value == pytest.approx(np.sqrt(changes.mean()))
    elsewhere = criteria.Representation("net", "stem", features)  # no perturbations of this layer were shown
    assert np.isnan(criteria.CRITERIA["transfer"](elsewhere, evidence).value)
    ceiled = criteria.CRITERIA["predictivity"](at_layer, evidence)
    assert ceiled.value == pytest.approx(ceiled.related["predictivity_r"] ** 2 / 0.9)


def test_the_best_layer_is_the_highest_score_and_nan_never_wins() -> None:
    nan = float("nan")
    assert screening.best_layer({"a": Score(0.2, 0, 1), "b": Score(0.5, 0, 1), "c": Score(0.5, 0, 1)}) == "b"
    assert screening.best_layer({"a": Score(nan, nan, nan), "b": Score(-0.1, -1, 1)}) == "b"


def test_the_screening_scores_every_candidate_by_every_criterion_on_a_small_simulated_brain() -> None:
    from neuroattack.attacks.settings import AttackSettings
    from neuroattack.brain.simulated import build_brain, record
    from neuroattack.data.stimuli import make_stimuli
    from neuroattack.networks.build import build_network, weights_to_dataset
    from neuroattack.networks.features import extract_features
    from neuroattack.networks.models import Architecture

    def weights(seed: int, eps: float) -> xr.Dataset:
        torch.manual_seed(seed)
        arch = Architecture(widths=(4, 8), blocks=(1, 1), num_classes=3)
        return weights_to_dataset(build_network(arch).eval(), arch, {"training_eps": eps})

    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    ids = [f"s{i:03d}" for i in range(40)]
    stimuli = make_stimuli(pixels, ids, np.repeat(["a", "b", "c", "d"], 10))
    brain = build_brain(weights(9, 0.5), pixels, 5, 3.0, 0.5, 2.0, -0.5, seed=7)
    networks = {"standard": weights(1, 0.0), "robust": weights(3, 1.0)}
    inputs = screening.ScreeningInputs(
        stimuli,
        record(brain, pixels, ids, repetitions=6, seed=1),
        networks,
        {name: extract_features(w, stimuli, name) for name, w in networks.items()},
        brain,
        {"robust@stem": extract_features(networks["robust"], stimuli, "robust", layer="stem")},
    )
    config = {"pls_components": 25, "splits": 3, "test_fraction": 0.2, "bootstrap": 20, "images": 2, "eps": 0.5}
    surrogate = {"alphas": [1.0, 100.0], "folds": 3, "reliability_splits": 4}
    settings = screening.ScreeningSettings.from_config(config, surrogate, seed=0, repetitions=6, recording_seed=5)
    result = screening.screen(inputs, settings, AttackSettings(steps=2, restarts=1, wide_ball_factor=1.0))
    for criterion in screening.CRITERIA:
        values = result[criterion].values
        assert np.isfinite(values).all(), criterion
        assert (result[f"{criterion}_low"].values <= values).all() and (values <= result[f"{criterion}_high"]).all()
        assert result.attrs[f"pick_by_{criterion}"] == screening.choose(result, criterion)
    assert result["layer"].values.tolist() == ["stem", "penultimate"]
    assert np.isnan(result["layer_predictivity"].sel(candidate="standard", layer="stem"))
    own = result["layer_predictivity"].sel(candidate="robust", layer="penultimate")
    assert own == result["predictivity"].sel(candidate="robust")
    assert result["transfer_change"].dims == ("attacker", "target") and result.sizes["target"] == 3
    assert result.attrs["pls_components"] == 8 and result.attrs["brain_training_eps"] == 0.5
