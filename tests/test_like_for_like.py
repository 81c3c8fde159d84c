"""Like for like: a network measured through the brain's own black-box pipeline, as if it were
the brain (config `like_for_like`), and the transfer ratios black box / white box."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from workflow_helpers import REPO, job_counts, snakemake

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    bootstrap_means,
    measured_as_brain,
    sign_corrected,
    transfer_ratio,
    transfer_ratios,
    white_box,
    with_measured_networks,
)
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_sites, white_box_changes
from neuroattack.brain.simulated import build_brain, expected_responses, matched_repetitions
from neuroattack.brain.sitemodels import fit_to_recordings
from neuroattack.config import BRAIN, ConfigError, split_view
from neuroattack.config_checks import checked_config
from neuroattack.data.recordings import make_recordings
from neuroattack.data.stimuli import make_stimuli
from neuroattack.figures.headline import transfer_table
from neuroattack.jobs import MEASURED_READOUT, brain_settings
from neuroattack.networks.build import build_network, weights_to_dataset
from neuroattack.networks.features import extract_features
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import infer
from neuroattack.plan import run_plan, subject_folder, subject_network

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def config_of(name: str, networks: Any, layers: list[str] | None = None) -> dict[str, Any]:
    """Config `name` with like_for_like.networks `networks`; with `layers`, also attack.layers and
    like_for_like.layers (each network measured as the brain at those layers too)."""
    config: dict[str, Any] = yaml.safe_load((REPO / f"config/{name}.yaml").read_text())
    config["like_for_like"] = {"networks": networks}
    if layers:
        config["attack"]["layers"] = layers
        config["like_for_like"]["layers"] = True
    return config


# --- the config ---------------------------------------------------------------------------


def test_matched_repetitions_are_the_kept_sites_median_valid_trials_and_never_below_a_split() -> None:
    shown = np.repeat(["a", "b", "c"], 6)
    response = np.ones((len(shown), 3), dtype=np.float32)
    for stimulus in ("a", "b"):
        response[shown == stimulus, 0] = [1, 1, 1, np.nan, np.nan, np.nan]  # site s0: 3, 3, 6 valid trials
    response[:, 2] = np.nan  # s2: 0, 0, 1 valid trials, and not kept
    response[np.flatnonzero(shown == "c")[:1], 2] = 1.0
    recordings = make_recordings(response, shown, np.arange(len(shown)), ["s0", "s1", "s2"], "IT", "m")
    kept = xr.Dataset(coords={"neuroid_id": ("site", ["s0", "s1"])})
    assert matched_repetitions(recordings, kept) == 6  # median of 3, 3, 6 and s1's 6, 6, 6 (with s2's: 3)
    only_third = xr.Dataset(coords={"neuroid_id": ("site", ["s2"])})
    assert matched_repetitions(recordings, only_third) == 2  # median 0 valid trials: a split still needs 2


def test_all_measures_every_network_and_the_brains_folder_is_the_results_root() -> None:
    assert run_plan(config_of("config", "all")).subjects == ("standard", "robust_eps0.25", "robust_eps1")
    assert run_plan(config_of("config", None)).subjects == ()
    assert subject_folder(None) == "" and subject_network("") is None
    assert subject_network(subject_folder("robust_eps0.25")) == "robust_eps0.25"


def test_with_layers_each_network_is_also_measured_as_the_brain_at_every_layer_attack_layers_adds() -> None:
    config = config_of("config", ["standard", "robust_eps1"], ["stages.1"])
    assert run_plan(config).subjects == ("standard", "robust_eps1", "standard@stages.1", "robust_eps1@stages.1")
    assert subject_network(subject_folder("standard@stages.1")) == "standard@stages.1"
    assert brain_settings(config, "standard@stages.1")["layer"] == "stages.1"
    assert "layer" not in brain_settings(config, "standard")  # its own layer, the penultimate (the default)
    config["like_for_like"]["layers"] = False
    assert run_plan(config).subjects == ("standard", "robust_eps1")


def test_the_example_config_measures_every_network_of_the_default_and_the_default_none() -> None:
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    example = yaml.safe_load((REPO / "config/examples/like_for_like.yaml").read_text())
    assert run_plan(default).subjects == ()
    assert run_plan({**default, **example}).subjects == tuple(default["networks"])
    assert checked_config({**default, **example}, SCHEMA)["like_for_like"] == {"networks": "all"}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c.update(like_for_like={"networks": ["resnet"]}), r"like_for_like\.networks names \['resnet'\]"),
        # the tiny config has no ensemble: its surrogate would attack itself
        (lambda c: c.update(like_for_like={"networks": ["robust_eps1"]}), "lists the surrogate 'robust_eps1'"),
        (
            lambda c: c.update(like_for_like={"networks": ["standard"]}) or c["surrogate"].update(network="auto"),
            "surrogate.network: auto needs loop.ensemble",
        ),
        (lambda c: c.update(like_for_like={"networks": "every"}), "like_for_like"),
        (
            lambda c: c.update(like_for_like={"networks": ["standard"], "layers": True}),
            r"like_for_like\.layers: true .* attack\.layers adds none for \['standard'\]",
        ),
    ],
)
def test_bad_like_for_like_entries_are_refused_at_start_naming_the_key(edit: Any, named: str) -> None:
    config = config_of("tiny", None)
    edit(config)
    with pytest.raises(ConfigError, match=named):
        checked_config(config, SCHEMA)


def test_with_real_recordings_a_network_is_read_out_with_the_default_rectifier_and_no_brain_section() -> None:
    config = config_of("tiny", ["standard"])
    config["recordings"] = {"source": "table", "path": str(REPO / "README.md"), "sites": None, "perturbed": None}
    del config["brain"]
    checked = checked_config(config, SCHEMA)
    assert run_plan(checked).subjects == ("standard",)
    assert brain_settings(checked, "standard") == MEASURED_READOUT  # its sites and noise: the recordings'
    config["brain"] = {"softplus_beta": 5.0}  # a rectifier of the user's
    assert brain_settings(config, "standard")["softplus_beta"] == 5.0


# --- the workflow: the measured network never attacks itself ---------------------------------


def dry_run_jobs(workdir: Path, configfile: Path) -> list[dict[str, Any]]:
    """Every job of a dry run: its rule, input and output paths."""
    run = snakemake(workdir, "--dry-run", configfile=str(configfile))
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=rule \S+:)", run.stdout):
        rule = re.match(r"rule (\S+):", block)
        if rule is None:
            continue
        files = {key: re.search(rf"\n\s+{key}: (.*)", block) for key in ("input", "output")}
        paths = {key: found.group(1).split(", ") if found else [] for key, found in files.items()}
        jobs.append({"rule": rule.group(1), **paths})
    return jobs


@pytest.mark.parametrize(
    ("name", "measured", "layers"), [("config", "all", None), ("tiny", ["standard"], ["stages.0"])]
)
def test_a_measured_network_is_never_among_its_own_surrogates(
    tmp_path: Path, name: str, measured: Any, layers: list[str] | None
) -> None:
    config = config_of(name, measured, layers)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(tmp_path, path)
    subjects = run_plan(config).subjects
    for network in subjects:
        folder = f"{config['results']}/{subject_folder(network)}"
        own = [job for job in jobs if job["output"] and all(p.startswith(folder) for p in job["output"])]
        rules = {re.sub(r"_part\d+$", "", job["rule"]) for job in own}  # a round's attack may be split
        assert {"build_brain", "record", "site_models", "attack_round", "brain_white_box"} <= rules, rules
        base = split_view(network)[0]  # a view's network
        itself = (f"/networks/{base}.nc", f"/features/{base}.nc", f"/ensemble/{base}.nc")
        for job in own:
            if job["rule"] == "build_brain":  # the brain is read out from the network itself
                assert job["input"][0].endswith(f"/networks/{base}.nc")
                continue
            assert not [p for p in job["input"] + job["output"] if p.endswith(itself)], job
        attacks = [job for job in own if job["rule"].startswith("attack_round")]
        assert len(attacks) == config["loop"]["rounds"] * len(run_plan(config).attack_parts)
        assert all(any("/networks/" in p for p in job["input"]) for job in attacks)  # some other network attacks
    counts = job_counts(snakemake(tmp_path, "--dry-run", configfile=str(path)).stdout)
    assert counts["build_brain"] == 1 + len(subjects) and counts["brain_white_box"] == 1 + len(subjects)
    assert counts["transfer_ratios"] == 1


def test_with_matched_noise_each_measured_network_reads_the_brains_recorded_sites_and_the_brain_does_not(
    tmp_path: Path,
) -> None:
    config = config_of("tiny", ["standard"])
    config["like_for_like"]["noise"] = "matched"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    builds = {job["output"][0]: job["input"] for job in dry_run_jobs(tmp_path, path) if job["rule"] == "build_brain"}
    results = config["results"]
    own, measured = builds[f"{results}/brain/brain.nc"], builds[f"{results}/subjects/standard/brain/brain.nc"]
    noise_sources = {f"{results}/recordings/clean.nc", f"{results}/rounds/round1/site_models.nc"}
    assert noise_sources <= set(measured) and not noise_sources & set(own)
    assert run_plan(config).matched_noise and not run_plan(config_of("tiny", ["standard"])).matched_noise


# --- the pipeline adds no bias of its own ---------------------------------------------------


def small_network(seed: int) -> xr.Dataset:
    torch.manual_seed(seed)
    arch = Architecture(widths=(8, 16), blocks=(1, 1), num_classes=3)
    return weights_to_dataset(build_network(arch).eval(), arch, {})


def measured_as_its_own_brain() -> dict[str, Any]:
    """A small network's simulated brain (4 sites), its noise-free recordings of 90 images, and
    site models fitted on them from the network's own features."""
    weights = small_network(4)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (90, 16, 16, 3), dtype=np.uint8)
    ids = [f"img{i}" for i in range(len(pixels))]
    stimuli = make_stimuli(pixels, ids, ["a", "b", "c"] * 30)
    brain = build_brain(weights, pixels, 4, 3.0, 0.5, 2.0, -0.5, seed=7)
    expected = infer(expected_responses(brain).all_sites, pixels)
    repetitions = 4  # noise off: every repetition the expected count (and a trace, for the reliability)
    response = np.repeat(expected[None], repetitions, axis=0) + 1e-4 * rng.normal(size=(repetitions, *expected.shape))
    recordings = make_recordings(
        response.reshape(-1, expected.shape[1]).astype(np.float32),
        ids * repetitions,
        np.repeat(np.arange(repetitions), len(ids)),
        brain["neuroid_id"].values.astype(str).tolist(),
        "IT",
        "in silico",
    )
    features = extract_features(weights, stimuli, "measured")
    models = fit_to_recordings(features, recordings, stimuli, [1e-3, 1e-1, 10.0], 3, 2, seed=0)
    return {"weights": weights, "stimuli": stimuli, "brain": brain, "expected": expected, "models": models}


def measured_changes(measured: dict[str, Any], models: xr.Dataset) -> dict[str, xr.DataArray]:
    """With `models` attacking, noise off: the site models' predicted change, the brain's change
    to the images shown (`recorded`) and its white box's, each (site, image, eps, direction),
    and the sites' spread `sigma`."""
    stimuli, brain = measured["stimuli"], measured["brain"]
    ids = stimuli["stimulus_id"].values.astype(str).tolist()
    settings = AttackSettings(steps=12, restarts=1, wide_ball_factor=1.0, stall_steps=0)
    eps, images = [0.5, 1.0], ids[:4]
    weights = measured["weights"]
    attacks = [attack_sites(i, stimuli, [weights], [models], settings, eps, seed=1, baseline_seed=2) for i in images]
    perturbed = np.stack([a["perturbed"].values for a in attacks])  # image, site, eps, direction, y, x, channel
    shown = infer(expected_responses(brain).all_sites, perturbed.reshape(-1, *perturbed.shape[-3:]))
    shown = shown.reshape(*perturbed.shape[:4], -1)
    sites = np.arange(perturbed.shape[1])
    clean = measured["expected"][[ids.index(i) for i in images]]
    recorded = shown[:, sites, :, :, sites] - clean.T[:, :, None, None]  # each site's own images: site first
    dims = ("site", "image", "eps", "direction")
    truth = white_box_changes(brain, stimuli, images, settings, eps, seed=3)
    predicted = xr.concat([a["site_change"] for a in attacks], dim="image").transpose(*dims)
    return {
        "predicted": predicted,
        "recorded": xr.DataArray(recorded, dims=dims, coords=predicted.coords),
        "white": truth["change"].transpose(*dims),
        "sigma": xr.DataArray(truth["sigma"].values, dims="site"),
    }


def test_a_network_measured_as_the_brain_through_its_own_readout_moves_it_as_its_white_box() -> None:
    """Noise off, the network itself the only surrogate and its site models the brain's own
    readout (before the rectifier, which keeps the order of responses): along each direction
    the images shown move the brain as far as its white box does. The pipeline (attack, 8-bit
    images, recording, alignment of sites and images) adds no bias of its own."""
    measured = measured_as_its_own_brain()
    own = measured["models"].copy()
    own["weight"] = (("site", "feature"), measured["brain"]["readout_weight"].values)
    own["bias"] = ("site", measured["brain"]["readout_bias"].values)
    changes = measured_changes(measured, own)
    sign = xr.DataArray([1.0, -1.0], dims="direction")
    recovered = (changes["recorded"] * sign).mean(("site", "image")) / (changes["white"] * sign).mean(("site", "image"))
    np.testing.assert_allclose(recovered.values, 1.0, atol=0.02)


def test_a_fitted_readout_of_the_network_itself_bounds_its_white_box_from_below() -> None:
    """Fitted on noise-free recordings, the linear readout misses the brain's rectifier (cross-
    validated r about 0.8 here; it also cannot tell which direction moves a rectified site
    more): the sign-corrected black box stays a lower bound, above zero."""
    measured = measured_as_its_own_brain()
    changes = measured_changes(measured, measured["models"])
    black = sign_corrected(changes["predicted"], changes["recorded"], changes["sigma"])
    white = white_box(changes["white"], changes["sigma"])
    ratio = black.mean(("site", "image")).values / white.mean(("site", "image")).values
    assert np.all(ratio > 0.2) and np.all(ratio <= 1.0 + 1e-3), ratio


# --- the transfer ratios ----------------------------------------------------------------------


def site_changes_of(black: np.ndarray, white: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        np.stack([black, white]),
        dims=("population", "site", "image", "eps"),
        coords={"population": [BRAIN_BLACK_BOX, BRAIN_WHITE_BOX], "eps": [0.5, 1.0]},
    )


def test_the_transfer_ratio_is_the_ratio_of_the_means_with_a_paired_interval() -> None:
    rng = np.random.default_rng(1)
    white = rng.gamma(2.0, 0.5, size=(8, 5, 2))
    black = 0.6 * white  # every site recovers the same share: the paired interval is a point
    ratio = transfer_ratio(site_changes_of(black, white), bootstrap=200, seed=4)
    np.testing.assert_allclose(ratio["transfer"].values, 0.6)
    np.testing.assert_allclose(ratio["transfer_low"].values, 0.6)
    np.testing.assert_allclose(ratio["transfer_high"].values, 0.6)
    noisy = transfer_ratio(site_changes_of(black + rng.normal(0, 0.3, white.shape), white), 200, 4)
    assert np.all(noisy["transfer_low"].values < noisy["transfer"].values)
    assert np.all(noisy["transfer"].values < noisy["transfer_high"].values)
    samples = bootstrap_means(white.astype(np.float64), 50, 9)
    assert np.array_equal(samples, bootstrap_means(white.astype(np.float64), 50, 9))  # the pairing's premise


def round_summary(round_number: int, black: list[float], white: list[float]) -> xr.Dataset:
    eps = [0.5, 1.0]
    summary = xr.Dataset(
        {
            "s_tilde": (("population", "eps"), np.array([black, white])),
            "ci_low": (("population", "eps"), np.array([black, white]) - 0.1),
            "ci_high": (("population", "eps"), np.array([black, white]) + 0.1),
            "transfer": ("eps", np.array(black) / np.array(white)),
            "transfer_low": ("eps", np.array(black) / np.array(white) - 0.05),
            "transfer_high": ("eps", np.array(black) / np.array(white) + 0.05),
        },
        coords={"population": [BRAIN_BLACK_BOX, BRAIN_WHITE_BOX], "eps": eps},
    )
    summary.attrs = {"round": round_number}
    return summary


def test_the_brain_is_calibrated_by_the_networks_ratios_at_the_last_round() -> None:
    subjects = {
        BRAIN: [round_summary(1, [0.2, 0.5], [0.4, 1.0]), round_summary(2, [0.3, 0.6], [0.4, 1.0])],
        "a": [round_summary(1, [0.1, 0.2], [0.5, 1.0]), round_summary(2, [0.25, 0.5], [0.5, 1.0])],
        "b": [round_summary(1, [0.1, 0.2], [0.5, 1.0]), round_summary(2, [0.4, 0.8], [0.5, 1.0])],
    }
    result = transfer_ratios(subjects)
    assert result["ratio"].dims == ("subject", "round", "eps")
    np.testing.assert_allclose(result["ratio"].sel(subject="a", round=2).values, [0.5, 0.5])
    np.testing.assert_allclose(result["calibrated_low"].values, [0.3 / 0.8, 0.6 / 0.8])  # over the largest ratio
    np.testing.assert_allclose(result["calibrated_high"].values, [0.3 / 0.5, 0.6 / 0.5])  # over the smallest
    negative = copy.deepcopy(subjects)
    negative["a"][1] = round_summary(2, [-0.1, 0.5], [0.5, 1.0])
    calibrated = transfer_ratios(negative)["calibrated_low"].values
    assert np.isnan(calibrated[0]) and np.isfinite(calibrated[1])  # no calibration from a bound below zero


def test_a_real_brain_without_a_white_box_is_calibrated_and_has_no_ratio_of_its_own() -> None:
    real = round_summary(1, [0.3, 0.6], [1.0, 1.0]).sel(population=[BRAIN_BLACK_BOX])  # its white box dropped
    real = real.drop_vars(["transfer", "transfer_low", "transfer_high"])
    result = transfer_ratios({BRAIN: [real], "a": [round_summary(1, [0.25, 0.5], [0.5, 1.0])]})
    assert np.isnan(result["ratio"].sel(subject=BRAIN)).all() and np.isnan(result["white_box"].sel(subject=BRAIN)).all()
    np.testing.assert_allclose(result["black_box"].sel(subject=BRAIN, round=1).values, [0.3, 0.6])
    np.testing.assert_allclose(result["calibrated_low"].values, [0.6, 1.2])  # its bound over the network's 0.5
    table = transfer_table(result)
    assert "<th>a, round 1</th>" in table and f"<th>{BRAIN}, round" not in table and "0.600 to 0.600" in table


def test_a_measured_network_joins_the_sensitivity_file_as_its_own_population() -> None:
    sensitivity = xr.Dataset(
        {
            "s_tilde": (("population", "eps"), [[0.2, 0.5], [0.3, 0.9]]),
            "ci_low": (("population", "eps"), [[0.1, 0.4], [0.2, 0.8]]),
            "ci_high": (("population", "eps"), [[0.3, 0.6], [0.4, 1.0]]),
            "random_pair_level": ("population", [1.1, 1.2]),
        },
        coords={"population": [BRAIN_BLACK_BOX, "standard"], "eps": [0.5, 1.0]},
    )
    joined = with_measured_networks(sensitivity, {"standard": round_summary(3, [0.25, 0.7], [0.3, 0.9])})
    row = joined.sel(population=measured_as_brain("standard"))
    np.testing.assert_allclose(row["s_tilde"].values, [0.25, 0.7])
    np.testing.assert_allclose(joined.sel(population="standard")["s_tilde"].values, [0.3, 0.9])  # untouched
    assert np.isnan(float(row["random_pair_level"]))


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_tiny_run_measures_a_network_as_the_brain_and_figure1_draws_bound_against_bound(tmp_path: Path) -> None:
    config = config_of("tiny", ["standard"], ["stages.0"])  # and at stages.0, for figure 7's like for like
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    targets = ["figures/figure1.nc", "figures/figure7.nc", "report/headline.html"]
    run = snakemake(tmp_path, "--cores", "2", *(f"{config['results']}/{t}" for t in targets), configfile=str(path))
    assert run.returncode == 0, run.stderr[-5000:]
    results = tmp_path / config["results"]
    measured = results / "subjects/standard"
    brain = xr.open_dataset(measured / "brain/brain.nc")
    assert brain.sizes["site"] == config["brain"]["sites"] and '"widths": [8, 16]' in brain.attrs["architecture"]
    attack = xr.open_dataset(measured / "rounds/round2/attacks/image0000.nc")
    assert "standard" not in attack.attrs["ensemble"]  # the surrogate's site models attacked it
    sensitivity = xr.open_dataset(results / "sensitivity/sensitivity.nc")
    own = xr.open_dataset(measured / "rounds/round2/sensitivity.nc")
    np.testing.assert_array_equal(
        sensitivity["s_tilde"].sel(population="black_box:standard").values,
        own["s_tilde"].sel(population="black_box").values,
    )
    transfer = xr.open_dataset(results / "sensitivity/transfer.nc")
    assert list(transfer["subject"].values)[:2] == ["brain", "standard"] and transfer.sizes["round"] == 2
    np.testing.assert_allclose(
        transfer["ratio"].sel(subject="standard", round=2).values, own["transfer"].values, rtol=1e-6
    )
    figure = xr.open_dataset(results / "figures/figure1.nc")
    assert int(figure["panel"].sel(population="black_box:standard")) == 1
    assert "like for like" in (results / "report/headline.html").read_text().lower()
    # figure 7: the network at each depth through the brain's pipeline, its own layer's as above
    view = xr.open_dataset(results / "subjects/standard@stages.0/brain/brain.nc")
    assert view.attrs["layer"] == "stages.0" and brain.attrs["layer"] == "penultimate"
    depth = xr.open_dataset(results / "figures/figure7.nc").sel(network="standard")
    assert depth["layer"].values.tolist() == ["stages.0", "penultimate"]
    np.testing.assert_array_equal(
        depth["black_box_s_tilde"].isel(depth=1).values, sensitivity["s_tilde"].sel(population="black_box:standard")
    )
    assert bool(depth["measured_as_brain"]) and np.isfinite(depth["black_box_s_tilde"]).all()
    np.testing.assert_allclose(  # each bound's transfer ratio by depth, its own layer's as in transfer.nc
        depth["black_box_transfer"].isel(depth=1).values, transfer["ratio"].sel(subject="standard").isel(round=-1)
    )
    assert "standard@stages.0" in transfer["subject"].values.tolist()  # its transfer ratio, by round
