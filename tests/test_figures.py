"""Figures 1, 2 and 4 drawn from small synthetic inputs: what a reader must be able to see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.lines import Line2D
from workflow_helpers import REPO

from neuroattack import figures, io
from neuroattack.analysis import coverage
from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE, random_directions

EPS = [0.1, 0.3, 1.0, 3.0]


def sensitivity_file(populations: list[str], pair_level: float = 1.01) -> xr.Dataset:
    rng = np.random.default_rng(0)
    s = np.sort(rng.uniform(0.0, 2.0, (len(populations), len(EPS))), axis=1)
    if BRAIN_BLACK_BOX in populations:
        s[populations.index(BRAIN_BLACK_BOX), 0] = -0.05  # lost in the noise at the smallest eps
    levels = [pair_level if p == BRAIN_BLACK_BOX else 1.1 for p in populations]
    return xr.Dataset(
        {
            "s_tilde": (("population", "eps"), s),
            "ci_low": (("population", "eps"), s - 0.1),
            "ci_high": (("population", "eps"), s + 0.1),
            "random_pair_level": ("population", levels),
        },
        coords={"population": populations, "eps": EPS},
    )


IN_SILICO = [
    BRAIN_BLACK_BOX,
    SURROGATE,
    random_directions("surrogate"),
    BRAIN_WHITE_BOX,
    "standard",
    random_directions("standard"),
    "robust_eps0.25",
    "robust_eps1",
    "robust_eps3",
]


def curves(fig: plt.Figure) -> dict[str, Line2D]:
    ax = fig.axes[0]
    return {line.get_label(): line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")}


def test_figure1_gives_every_population_its_own_colour_and_marker() -> None:
    fig, plotted = figures.figure1(sensitivity_file(IN_SILICO))
    lines = curves(fig)
    assert len(lines) == 7  # brain x3 and four networks; baselines left out
    styles = [(str(line.get_color()), str(line.get_marker())) for line in lines.values()]
    assert len({colour for colour, _ in styles}) == len(styles)
    assert len({marker for _, marker in styles}) == len(styles)
    assert list(plotted["population"].values[:3]) == [BRAIN_BLACK_BOX, SURROGATE, BRAIN_WHITE_BOX]
    plt.close(fig)


def test_figure1_marks_the_black_box_estimate_as_a_lower_bound_beside_the_surrogate() -> None:
    fig, plotted = figures.figure1(sensitivity_file(IN_SILICO))
    labels = list(curves(fig))
    assert any("black box" in label and "lower bound" in label for label in labels)
    assert any("surrogate" in label and "upper reference" in label for label in labels)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "lower bound" in texts
    arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None]
    assert len(arrows) >= len(EPS)  # one upward arrow per eps
    assert "lower bound" in str(plotted["label"].sel(population=BRAIN_BLACK_BOX).values)
    plt.close(fig)


def test_figure1_shows_a_negative_estimate_on_a_linear_axis() -> None:
    fig, plotted = figures.figure1(sensitivity_file(IN_SILICO))
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    low, high = ax.get_ylim()
    assert low < -0.05 < high
    assert float(plotted["s_tilde"].sel(population=BRAIN_BLACK_BOX, eps=0.1)) == pytest.approx(-0.05)
    plt.close(fig)


def test_figure1_keeps_both_reference_levels_visible_when_they_coincide() -> None:
    fig, _ = figures.figure1(sensitivity_file(IN_SILICO, pair_level=1.0))
    ax = fig.axes[0]
    references = [line for line in ax.get_lines() if list(line.get_ydata()) == [1.0, 1.0]]
    assert len(references) == 2
    wide, thin = sorted(references, key=Line2D.get_linewidth, reverse=True)
    assert wide.get_linewidth() >= 3 * thin.get_linewidth()  # the dashed line on top never covers the band
    assert wide.get_color() != thin.get_color() and thin.get_linestyle() != "-"
    fig.canvas.draw()
    names = [t for t in ax.texts if t.get_text().startswith(("1 s.d.", "random pairs"))]
    assert len(names) == 2
    boxes = [t.get_window_extent() for t in names]
    assert not boxes[0].overlaps(boxes[1])
    plt.close(fig)


def test_figure1_without_perturbed_recordings_draws_the_surrogate_for_the_brain() -> None:
    fig, plotted = figures.figure1(sensitivity_file([SURROGATE, "standard", "robust_eps1"]))
    assert list(plotted["population"].values) == [SURROGATE, "standard", "robust_eps1"]
    assert not any("lower bound" in label for label in curves(fig))
    assert float(plotted.attrs["random_pair_level_brain"]) == pytest.approx(1.1)
    plt.close(fig)


# --- figures 2 and 4 on a synthetic experiment with a known answer ---------------------

SITES, IMAGES, STIMULI, SIDE = 5, 4, 12, 4
DIRECTIONS = ["increase", "decrease"]
SMALL_EPS = [0.5, 2.0]


def experiment(with_responses: bool = True) -> dict[str, object]:
    """Site k's recorded clean responses have s.d. 1 over stimuli; every attack on site k
    moves it by k/2 s.d. at the small eps and k s.d. at the large one, in the predicted
    direction: s~_k = (k/2, k) exactly."""
    rng = np.random.default_rng(1)
    ids = [f"s{i:02d}" for i in range(STIMULI)]
    neuroids = [f"n{k}" for k in range(SITES)]
    pixels = rng.integers(0, 256, (STIMULI, SIDE, SIDE, 3), dtype=np.uint8)
    stimuli = xr.Dataset({"pixels": (("stimulus_id", "y", "x", "channel"), pixels)}, coords={"stimulus_id": ids})
    means = rng.normal(5.0, 1.0, (STIMULI, SITES))
    means = (means - means.mean(0)) / means.std(0, ddof=1) + 5.0  # s.d. exactly 1 per site
    recordings = xr.Dataset(
        {"response": (("presentation", "site"), np.repeat(means, 2, axis=0))},
        coords={
            "stimulus_id": ("presentation", np.repeat(ids, 2)),
            "repetition": ("presentation", np.tile([0, 1], STIMULI)),
            "neuroid_id": ("site", neuroids),
        },
    )
    size = np.arange(SITES)[:, None] * np.asarray(SMALL_EPS)[None, :] / 2.0  # (site, eps)
    change = np.stack([size, -size], axis=-1)  # increase pushes up, decrease down
    attacks = []
    for image in range(IMAGES):
        perturbed = np.broadcast_to(pixels[image], (SITES, len(SMALL_EPS), 2, SIDE, SIDE, 3)).copy()
        perturbed[..., 0, 0, 0] = np.where(pixels[image, 0, 0, 0] > 127, 0, 255)  # one pixel moved
        attack = xr.Dataset(
            {
                "site_clean": ("site", means[image]),
                "site_change": (("site", "eps", "direction"), change),
                "site_random_change": (("site", "eps", "direction"), change / 10),  # as every attack file has
                "perturbed": (("site", "eps", "direction", "y", "x", "channel"), perturbed),
            },
            coords={"eps": SMALL_EPS, "direction": DIRECTIONS, "neuroid_id": ("site", neuroids)},
        )
        attack.attrs["stimulus_id"] = ids[image]
        attacks.append(attack)
    cube = np.broadcast_to(change[:, None], (SITES, IMAGES, len(SMALL_EPS), 2))
    clean = means[:IMAGES].T  # (site, image)
    responses = xr.Dataset(
        {
            "predicted_change": (("site", "image", "eps", "direction"), cube),
            "recorded_change": (("site", "image", "eps", "direction"), cube),
            "recorded": (("site", "image", "eps", "direction"), cube + clean[:, :, None, None]),
            "recorded_clean": (("site", "image"), clean),
        },
        coords={"image": ids[:IMAGES], "eps": SMALL_EPS, "direction": DIRECTIONS, "neuroid_id": ("site", neuroids)},
    )
    sensitivity = sensitivity_file([BRAIN_BLACK_BOX if with_responses else SURROGATE, "standard"], pair_level=1.2)
    if not with_responses:
        sensitivity["random_pair_level"][:] = 1.2
    return {
        "stimuli": stimuli,
        "attacks": attacks,
        "responses": responses if with_responses else None,
        "recordings": recordings,
        "sensitivity": sensitivity,
    }


def covered(inputs: dict[str, object]) -> xr.Dataset:
    return coverage.coverage(
        inputs["attacks"],  # type: ignore[arg-type]
        inputs["responses"],  # type: ignore[arg-type]
        inputs["recordings"],  # type: ignore[arg-type]
        None,
        inputs["sensitivity"],  # type: ignore[arg-type]
        bootstrap=50,
        seed=0,
    )


def test_figure7_draws_every_network_by_depth_and_finds_its_first_layer_as_robust_as_the_brain() -> None:
    known = {  # s~ at every eps
        BRAIN_BLACK_BOX: 1.0,
        SURROGATE: 1.5,
        "standard@stages.0": 2.0,
        "standard@stages.1": 0.5,
        "standard": 0.8,
        "robust@stem": 3.0,
        "robust": 2.0,
    }
    sensitivity = sensitivity_file(list(known))
    sensitivity["s_tilde"][:] = np.array(list(known.values()))[:, None]
    layers = {"standard": ["stages.0", "stages.1", "penultimate"], "robust": ["stem", "penultimate"]}
    fig, numbers = figures.figure7(sensitivity, layers, {"standard": "penultimate", "robust": "penultimate"})
    assert len(fig.axes) == len(EPS)
    np.testing.assert_array_equal(numbers["s_tilde"].sel(network="standard", eps=0.1).values, [2.0, 0.5, 0.8])
    assert np.isnan(numbers["s_tilde"].sel(network="robust", depth=2)).all()  # a shorter list
    assert numbers["layer"].sel(network="robust").values.tolist() == ["stem", "penultimate", ""]
    assert numbers["first_as_robust"].sel(network="standard").values.tolist() == [1] * len(EPS)
    assert numbers["first_as_robust"].sel(network="robust").values.tolist() == [-1] * len(EPS)
    assert numbers.attrs["brain_reference"] == BRAIN_BLACK_BOX
    assert float(numbers["brain_s_tilde"].sel(reference=BRAIN_BLACK_BOX, eps=0.1)) == 1.0
    black_lines = [line for line in fig.axes[0].get_lines() if line.get_color() == "black"]
    assert len(black_lines) == 1 and black_lines[0].get_ydata()[0] == 1.0
    plt.close(fig)


def test_figure7_compares_like_with_like_where_networks_were_measured_as_the_brain_at_every_depth() -> None:
    known = {  # s~ at every eps: white box, and black box where measured as the brain
        BRAIN_BLACK_BOX: 1.0,
        "standard@stages.0": 2.0,
        "standard": 0.8,
        "robust@stem": 3.0,
        "robust": 2.0,
        "black_box:standard@stages.0": 1.4,
        "black_box:standard": 0.6,
        "black_box:robust": 0.9,  # robust's stem was not measured as the brain
    }
    sensitivity = sensitivity_file(list(known))
    sensitivity["s_tilde"][:] = np.array(list(known.values()))[:, None]
    layers = {"standard": ["stages.0", "penultimate"], "robust": ["stem", "penultimate"]}
    subjects = ["brain", "standard", "robust", "standard@stages.0"]
    ratios = np.array([0.7, 0.75, 0.65, 0.1])[:, None, None] * np.ones((1, 2, len(EPS)))  # rounds 1 and 2
    ratios[:, 0] = 0.5  # an earlier round's: not the one compared
    transfer = xr.Dataset(
        {"ratio": (("subject", "round", "eps"), ratios)}, coords={"subject": subjects, "round": [1, 2], "eps": EPS}
    )
    own = {"standard": "penultimate", "robust": "penultimate"}
    fig, numbers = figures.figure7(sensitivity, layers, own, transfer)
    assert len(fig.axes) == 2 * len(EPS)  # a second row: bound against bound
    assert "black box" in fig.axes[len(EPS)].get_ylabel() and "white box" in fig.axes[0].get_ylabel()
    np.testing.assert_array_equal(numbers["black_box_s_tilde"].sel(network="standard", eps=0.1).values, [1.4, 0.6])
    assert np.isnan(numbers["black_box_s_tilde"].sel(network="robust", depth=0)).all()
    assert numbers["measured_as_brain"].values.tolist() == [True, False]
    # white box: standard is as robust as the brain's bound at its own layer (0.8 <= 1.0)
    assert numbers["first_as_robust"].sel(network="standard").values.tolist() == [1] * len(EPS)
    assert numbers["first_as_robust_like_for_like"].sel(network="standard").values.tolist() == [1] * len(EPS)
    # robust's black box at its own layer is below the brain's, but its stem was never measured
    assert numbers["first_as_robust_like_for_like"].sel(network="robust").values.tolist() == [-1] * len(EPS)
    # each bound's last-round transfer ratio beside the brain's: the shallow bound recovers far less
    np.testing.assert_allclose(numbers["black_box_transfer"].sel(network="standard", eps=0.1).values, [0.1, 0.75])
    assert np.isnan(numbers["black_box_transfer"].sel(network="robust", depth=0)).all()
    np.testing.assert_allclose(numbers["brain_transfer"].values, 0.7)
    assert "0.70 of its truth" in fig.axes[len(EPS)].get_title()
    plt.close(fig)


def test_figure7_has_no_like_for_like_row_without_the_brains_black_box() -> None:
    known = {SURROGATE: 1.0, "standard@stages.0": 2.0, "standard": 0.8, "black_box:standard@stages.0": 1.4}
    sensitivity = sensitivity_file(list(known))
    sensitivity["s_tilde"][:] = np.array(list(known.values()))[:, None]
    fig, numbers = figures.figure7(sensitivity, {"standard": ["stages.0", "penultimate"]}, {"standard": "penultimate"})
    assert len(fig.axes) == len(EPS) and "first_as_robust_like_for_like" not in numbers
    plt.close(fig)


@pytest.mark.parametrize("with_responses", [True, False])
def test_coverage_recovers_known_per_site_sensitivity(with_responses: bool) -> None:
    result = covered(experiment(with_responses))
    estimate = BRAIN_BLACK_BOX if with_responses else SURROGATE
    assert figures.main_estimate(result) == estimate
    expected = np.arange(SITES)[:, None] * np.asarray(SMALL_EPS)[None, :] / 2.0
    np.testing.assert_allclose(result["site_s_tilde"].sel(population=estimate).values, expected, atol=1e-9)
    # every image gives the same change here, so the interval over images is the value itself
    np.testing.assert_allclose(result["site_ci_low"].sel(population=estimate).values, expected, atol=1e-9)
    np.testing.assert_allclose(result["site_ci_high"].sel(population=estimate).values, expected, atol=1e-9)
    # moved by >= 1 s.d.: at eps 0.5 (k/4) only site 4; at eps 2 (k) sites 1 to 4
    moved = result["moved_fraction"].sel(population=estimate).values
    np.testing.assert_allclose(moved, [1 / 5, 4 / 5])
    assert result.attrs["random_pair_level"] == pytest.approx(1.2)


def test_figure4_sorts_sites_and_states_the_moved_fraction() -> None:
    fig, plotted = figures.figure4(covered(experiment()))
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["n4", "n3", "n2", "n1", "n0"]
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("80% of pairs moved" in label for label in labels)
    assert any("20% of pairs moved" in label for label in labels)
    assert int(plotted["site_rank"].isel(site=4)) == 0  # the most sensitive site is drawn first
    plt.close(fig)


@pytest.mark.parametrize("with_responses", [True, False])
def test_figure2_shows_the_most_median_and_least_sensitive_sites(with_responses: bool) -> None:
    inputs = experiment(with_responses)
    examples = coverage.examples(
        inputs["stimuli"],  # type: ignore[arg-type]
        inputs["attacks"],  # type: ignore[arg-type]
        inputs["responses"],  # type: ignore[arg-type]
        inputs["recordings"],  # type: ignore[arg-type]
        sites=3,
    )
    assert list(examples["neuroid_id"].values) == ["n4", "n2", "n0"]
    assert ("recorded" in examples) == with_responses
    one_pixel = examples["perturbation"].isel(site=0, eps=0, direction=0).values
    assert np.count_nonzero(one_pixel) == 1 and abs(one_pixel[0, 0, 0]) > 0
    natural = examples["natural_max"].values - examples["natural_min"].values
    assert bool((natural > 0).all())
    fig, plotted = figures.figure2(examples)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 3 * (1 + 2 * 2 * len(SMALL_EPS))  # clean + (perturbed, perturbation) per cell
    np.testing.assert_allclose(plotted["amplification"].values[0, 0, 0], 0.5 / np.abs(one_pixel).max())
    plt.close(fig)


def test_amplified_perturbation_fills_the_range_around_grey() -> None:
    picture, factor = figures.amplified(np.array([[[-0.01, 0.0, 0.02]]]))
    np.testing.assert_allclose(picture.ravel(), [0.25, 0.5, 1.0])
    assert factor == pytest.approx(25.0)


def test_the_sensitivity_table_lists_figure1s_populations_with_intervals() -> None:
    html = figures.sensitivity_table(sensitivity_file(IN_SILICO))
    assert "brain, black box (a lower bound)" in html and "robust_eps3" in html
    assert "random directions" not in html
    assert html.count("</tr>") == 2 + 7  # two header rows (columns, index name), one row per population


@pytest.mark.slow
def test_the_tiny_run_draws_figures_2_and_4_with_their_numbers(tiny_run: Path) -> None:
    for number, variables in [(2, {"perturbed", "predicted", "recorded", "amplification"}), (4, {"site_s_tilde"})]:
        stem = tiny_run / "figures" / f"figure{number}"
        assert stem.with_suffix(".png").stat().st_size > 10_000 and stem.with_suffix(".pdf").stat().st_size > 1_000
        assert variables <= set(io.read_dataset(stem.with_suffix(".nc")).data_vars)
    table = (tiny_run / "report" / "sensitivity_table.html").read_text()
    assert "brain, black box (a lower bound)" in table


@pytest.mark.parametrize(
    "script", ["figure1", "figure2", "figure3", "figure4", "figure5", "figure6", "figure8", "sensitivity_table"]
)
def test_a_figure_job_loads_no_torch(script: str) -> None:
    """A figure job's imports (those of its rule script) leave torch and scikit-learn unloaded:
    they would cost each job seconds of start-up."""
    source = (REPO / "workflow/scripts" / f"{script}.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("from neuroattack", "import neuroattack"))]
    assert imports, script  # the script is read right
    probe = "\n".join([*imports, "import sys", "print(sorted({'torch', 'sklearn'} & set(sys.modules)))"])
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]", (script, run.stdout)


def test_population_keys_stay_in_the_data_and_legends_get_labels() -> None:
    from neuroattack.figures.sensitivity import population_label

    assert population_label(BRAIN_BLACK_BOX) == "brain (black box)"
    assert population_label(random_directions("brain")) == "random directions (brain, recorded)"
    assert population_label(random_directions(SURROGATE)) == "random directions (surrogate (predicted))"
    assert population_label("robust_eps1") == "robust_eps1"
    populations = [BRAIN_BLACK_BOX, random_directions("brain"), SURROGATE, BRAIN_WHITE_BOX]
    by_round = xr.Dataset(
        {name: (("round", "population", "eps"), np.full((2, 4, 2), 0.5)) for name in ("s_tilde", "ci_low", "ci_high")},
        coords={"round": [1, 2], "population": populations, "eps": [1.0, 3.0]},
    )
    fig, plotted = figures.figure6(by_round)
    legend = [text.get_text() for text in fig.axes[-1].get_legend().get_texts()]
    assert legend == [population_label(p) for p in populations]
    assert plotted["population"].values.tolist() == populations
