"""Figure 1 (s~(eps) of the brain and every network), its s~ table for the report, and
figure 6 (the closed loop, s~ by round)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    MEASURED_PREFIX,
    RANDOM_PREFIX,
    SURROGATE,
    measured_as_brain,
    random_directions,
)
from neuroattack.config import split_view

# What a legend calls each population key (networks keep their config names).
POPULATION_LABELS = {
    BRAIN_BLACK_BOX: "brain (black box)",
    BRAIN_WHITE_BOX: "brain (white box)",
    SURROGATE: "surrogate (predicted)",
    "brain": "brain, recorded",
}


def population_label(population: str) -> str:
    """A population key as a legend names it: `random:black_box` -> random directions (brain (black box))."""
    if population.startswith(RANDOM_PREFIX):
        return f"random directions ({population_label(population.removeprefix(RANDOM_PREFIX))})"
    if population.startswith(MEASURED_PREFIX):
        return f"{population.removeprefix(MEASURED_PREFIX)} (black box, as the brain)"
    return POPULATION_LABELS.get(population, population)


def network_populations(sensitivity: xr.Dataset) -> list[str]:
    """The networks' own populations, in the order of the sensitivity file."""
    named = {BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE}
    populations = [str(p) for p in sensitivity["population"].values]
    baselines = {random_directions(p) for p in populations} | {random_directions("surrogate")}
    return [
        p
        for p in populations
        if p not in named and p not in baselines and not p.startswith(MEASURED_PREFIX) and split_view(p)[1] is None
    ]


def measured_populations(sensitivity: xr.Dataset) -> list[str]:
    """The networks measured as the brain (`black_box:<network>`), in the networks' order."""
    present = set(sensitivity["population"].values.tolist())
    return [measured_as_brain(p) for p in network_populations(sensitivity) if measured_as_brain(p) in present]


def figure1_populations(sensitivity: xr.Dataset) -> list[str]:
    """Brain first (the black-box estimate, the surrogate's prediction beside it as the
    upper reference, the white-box truth where the brain is simulated), then the networks
    (baselines are left to other figures). Without recordings of perturbed images the
    surrogate's prediction stands in for the brain."""
    present = set(sensitivity["population"].values.tolist())
    brain = [BRAIN_BLACK_BOX, SURROGATE, BRAIN_WHITE_BOX] if BRAIN_BLACK_BOX in present else [SURROGATE]
    return [p for p in [*brain, *network_populations(sensitivity)] if p in present]


# How the brain's populations are drawn and named in figure 1; networks get the rest.
FIGURE1_LABELS = {
    BRAIN_BLACK_BOX: "brain, black box (a lower bound)",
    SURROGATE: "surrogate's prediction (upper reference)",
    BRAIN_WHITE_BOX: "brain, white box (truth, in silico)",
}
FIGURE1_STYLES: dict[str, dict[str, Any]] = {
    BRAIN_BLACK_BOX: {"color": "black", "marker": "^", "linestyle": "-", "linewidth": 2.0},
    SURROGATE: {"color": "#7f7f7f", "marker": "v", "linestyle": ":", "linewidth": 1.5},
    BRAIN_WHITE_BOX: {"color": "#cc79a7", "marker": "o", "linestyle": "--", "linewidth": 1.5, "mfc": "white"},
}
# Colour-blind-safe colours that the brain's styles do not use (Okabe-Ito, then tab10), and markers.
NETWORK_COLOURS = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#56b4e9", "#f0e442", "#8c564b", "#17becf"]
NETWORK_MARKERS = ["s", "D", "P", "X", "*", "h", "p", "<", ">", "d"]


def figure1_style(populations: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour and marker for every population of figure 1 (networks in order)."""
    styles = {p: FIGURE1_STYLES[p] for p in populations if p in FIGURE1_STYLES}
    networks = [p for p in populations if p not in FIGURE1_STYLES]
    for index, name in enumerate(networks):
        colour = NETWORK_COLOURS[index % len(NETWORK_COLOURS)]
        marker = NETWORK_MARKERS[index % len(NETWORK_MARKERS)]
        styles[name] = {"color": colour, "marker": marker, "linestyle": "-", "linewidth": 1.2}
    return styles


def figure1_label(population: str, brain_is_surrogate: bool) -> str:
    if brain_is_surrogate and population == SURROGATE:
        return "IT, predicted by the surrogate (no recordings of perturbed images)"
    return FIGURE1_LABELS.get(population, population_label(population))


def figure1(sensitivity: xr.Dataset, transfer: xr.Dataset | None = None) -> tuple[Figure, xr.Dataset]:
    """s~(eps) of the brain and every network, with 95% CIs and both reference levels, on
    a linear axis (the black-box estimate can be below zero where the brain's change is
    lost in its noise). The black-box estimate is marked as the lower bound it is; with the
    transfer ratios (`transfer`), the brain's s~ calibrated by the networks' ratios is a band.
    Where networks were measured as the brain, a second panel compares bound with bound: the
    brain's black box against each network's.

    Populations from several sources may share it (their eps grids joined: each is drawn at
    its own eps, where its s~ is not NaN); without a brain's population, the random-pair
    level is the first network's."""
    populations = figure1_populations(sensitivity)
    measured = measured_populations(sensitivity)
    styles = figure1_style(populations)
    for name in measured:
        styles[name] = {**styles[name.removeprefix(MEASURED_PREFIX)], "linestyle": "-."}
    brain_is_surrogate = BRAIN_BLACK_BOX not in populations
    sns.set_theme(style="ticks", context="paper")
    panels = 2 if measured and not brain_is_surrogate else 1
    size = (7.4, 4.2) if panels == 1 else (11.0, 5.6)
    fig, axes = plt.subplots(1, panels, figsize=size, sharey=True, squeeze=False)
    brain = SURROGATE if brain_is_surrogate else BRAIN_BLACK_BOX
    pair_level = float(
        sensitivity["random_pair_level"].sel(population=brain if brain in populations else populations[0])
    )
    _draw_populations(axes[0][0], sensitivity, populations, styles, brain_is_surrogate, pair_level)
    calibration = transfer if transfer is not None and "calibrated_low" in transfer and not brain_is_surrogate else None
    if calibration is not None:
        _draw_calibrated(axes[0][0], calibration)
    axes[0][0].set_title("brain's bound against networks' truth (white box)", fontsize=9)
    if panels == 2:
        compared = [BRAIN_BLACK_BOX, *measured]
        _draw_populations(axes[0][1], sensitivity, compared, styles, False, pair_level, note_bound=False)
        axes[0][1].set_title("like for like: every one a black-box bound", fontsize=9)
        axes[0][1].set_ylabel("")
    if panels == 1:
        axes[0][0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:  # beneath each panel, so that neither covers the other
        for ax in axes[0]:
            ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    sns.despine(fig)
    fig.tight_layout()
    every = populations + measured
    plotted = sensitivity.sel(population=every)[["s_tilde", "ci_low", "ci_high", "random_pair_level"]].copy()
    plotted = plotted.assign_coords(
        label=("population", [figure1_label(p, brain_is_surrogate) for p in every]),
        colour=("population", [styles[p]["color"] for p in every]),
        marker=("population", [styles[p]["marker"] for p in every]),
        panel=("population", [0] * len(populations) + [1] * len(measured)),
    )
    if calibration is not None:
        plotted["calibrated_low"] = calibration["calibrated_low"]
        plotted["calibrated_high"] = calibration["calibrated_high"]
    plotted.attrs = {"one_sd_level": 1.0, "random_pair_level_brain": pair_level, "y_scale": "linear"}
    return fig, plotted


def _draw_populations(
    ax: Axes,
    sensitivity: xr.Dataset,
    populations: list[str],
    styles: dict[str, dict[str, Any]],
    brain_is_surrogate: bool,
    pair_level: float,
    note_bound: bool = True,
) -> None:
    """One panel of figure 1: each population's s~ and interval, the lower bound marked (with
    `note_bound`, in words too), the reference levels."""
    shown = sensitivity.sel(population=populations)
    eps = shown["eps"].values
    for name in populations:
        row = shown.sel(population=name).dropna("eps", subset=["s_tilde"])
        drawn = row["eps"].values
        style = styles[name]
        ax.fill_between(drawn, row["ci_low"], row["ci_high"], color=style["color"], alpha=0.15, linewidth=0)
        ax.plot(drawn, row["s_tilde"], markersize=6, label=figure1_label(name, brain_is_surrogate), **style)
    if BRAIN_BLACK_BOX in populations:
        _mark_lower_bound(ax, shown.sel(population=BRAIN_BLACK_BOX), note=note_bound)
    draw_reference_levels(ax, pair_level)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_xlabel(r"perturbation budget $\epsilon$ (L2, pixels in [0, 1])")
    ax.set_ylabel(r"normalised sensitivity $\tilde{s}(\epsilon)$ (s.d. of clean responses)")


def _draw_calibrated(ax: Axes, transfer: xr.Dataset) -> None:
    """The brain's black box divided by the networks' transfer ratios: a hatched band (it
    assumes the brain transfers as the networks do)."""
    low, high = transfer["calibrated_low"], transfer["calibrated_high"]
    ax.fill_between(
        low["eps"].values,
        low.values,
        high.values,
        facecolor="none",
        edgecolor="0.3",
        hatch="///",
        linewidth=0.5,
        label="brain, calibrated by the networks' black/white ratios",
    )


def _mark_lower_bound(ax: Axes, brain: xr.Dataset, note: bool = True) -> None:
    """Upward arrows from the black-box estimate and (`note`) a note: the truth lies above it."""
    eps, values = brain["eps"].values, brain["s_tilde"].values
    span = float(np.nanmax(brain["ci_high"].values) - min(0.0, float(np.nanmin(brain["ci_low"].values))))
    for x, y in zip(eps, values, strict=True):
        ax.annotate(
            "", xy=(x, y + 0.12 * max(span, 0.1)), xytext=(x, y), arrowprops={"arrowstyle": "->", "color": "black"}
        )
    if not note:
        return
    ax.annotate(
        "black box = lower bound:\nthe brain's true sensitivity\nlies above",
        xy=(eps[-1], values[-1]),
        xytext=(6, -26),
        textcoords="offset points",
        fontsize=7,
        ha="left",
    )


def draw_reference_levels(ax: Axes, pair_level: float) -> None:
    """The 1-s.d. level as a wide pale band and the random-pair level as a thin dark dashed
    line on top, so that both stay visible when the two levels coincide; each named at the
    left edge (the two names apart even then)."""
    ax.axhline(1.0, color="#9ecae1", linewidth=5, alpha=0.8, zorder=0.5, label="1 s.d. of clean responses")
    if not np.isfinite(pair_level):
        return
    ax.axhline(pair_level, color="0.15", linestyle=(0, (4, 2)), linewidth=1.0, zorder=0.6, label="random image pairs")
    close = abs(pair_level - 1.0) < 0.08
    one_sd_above = pair_level <= 1.0
    transform = ax.get_yaxis_transform()
    for level, text, colour, above in [
        (1.0, "1 s.d.", "#3182bd", one_sd_above or not close),
        (pair_level, f"random pairs ({pair_level:.2f})", "0.15", not one_sd_above or not close),
    ]:
        ax.annotate(
            text,
            xy=(0.01, level),
            xycoords=transform,
            xytext=(0, 3 if above else -3),
            textcoords="offset points",
            fontsize=7,
            ha="left",
            va="bottom" if above else "top",
            color=colour,
        )


# --- the s~ table of figure 1 (for the report) ------------------------------------------


def sensitivity_table(sensitivity: xr.Dataset) -> str:
    """Figure 1's s~(eps) as an HTML page: one row per population (figure 1's labels), one
    column per eps, each cell the estimate and its 95% interval."""
    populations = figure1_populations(sensitivity) + measured_populations(sensitivity)
    brain_is_surrogate = BRAIN_BLACK_BOX not in populations
    shown = sensitivity.sel(population=populations)
    cells = {
        f"eps = {float(eps):g}": [
            f"{s:.3f} ({low:.3f} to {high:.3f})"
            for s, low, high in zip(
                shown["s_tilde"].sel(eps=eps).values,
                shown["ci_low"].sel(eps=eps).values,
                shown["ci_high"].sel(eps=eps).values,
                strict=True,
            )
        ]
        for eps in shown["eps"].values
    }
    table = pd.DataFrame(cells, index=[figure1_label(p, brain_is_surrogate) for p in populations])
    table["random image pairs"] = [
        f"{level:.3f}" if np.isfinite(level) else "" for level in shown["random_pair_level"].values
    ]
    table.index.name = "population"
    body = table.to_html(border=0, classes="sensitivity")
    style = (
        "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "th,td{padding:4px 10px;text-align:right;border-bottom:1px solid #ddd}th{text-align:left}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>s~(eps)</title><style>{style}</style></head>"
        f"<body><p>Normalised sensitivity s~(eps), mean (95% bootstrap interval), as drawn in figure 1.</p>"
        f"{body}</body></html>\n"
    )


# --- figure 6: the closed loop ----------------------------------------------------------

FIGURE6_DASHES = {BRAIN_WHITE_BOX: (2, 2), SURROGATE: (1, 1)}


def figure6(by_round: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """Achieved normalised change by round, one panel per eps: the brain's black-box estimate
    and the recorded random-direction baseline with 95% CIs, the surrogate's prediction, and
    (in silico) the brain's white-box sensitivity as the ceiling."""
    shown = by_round[["s_tilde", "ci_low", "ci_high"]]
    eps_grid = shown["eps"].values
    populations = [str(p) for p in shown["population"].values]
    palette = dict(zip(populations, sns.color_palette("colorblind", len(populations)), strict=True))
    sns.set_theme(style="ticks", context="paper")
    fig, axes = plt.subplots(1, len(eps_grid), figsize=(2.4 * len(eps_grid) + 1.6, 2.8), squeeze=False)
    rounds = shown["round"].values
    for ax, eps in zip(axes[0], eps_grid, strict=True):
        for name in populations:
            line = shown.sel(population=name, eps=eps)
            ax.plot(
                rounds,
                line["s_tilde"].values,
                marker="o",
                color=palette[name],
                dashes=FIGURE6_DASHES.get(name, (None, None)),
                label=population_label(name),
            )
            ax.fill_between(rounds, line["ci_low"].values, line["ci_high"].values, color=palette[name], alpha=0.2, lw=0)
        ax.set_title(rf"$\epsilon$ = {eps:g}")
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
    axes[0][0].set_ylabel(r"normalised change $\tilde{s}$")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    return fig, shown.copy()
