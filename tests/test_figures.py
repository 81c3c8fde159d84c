"""Figures 1, 2 and 4 drawn from small synthetic inputs: what a reader must be able to see."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.lines import Line2D

from neuroattack import figures
from neuroattack.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE, random_directions

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
