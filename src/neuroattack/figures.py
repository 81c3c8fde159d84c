"""Figures drawn with seaborn; each returns the figure and the numbers it plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

BRAIN = "brain (black box)"
BRAIN_WHITE_BOX = "brain (white box)"
SURROGATE = "surrogate (predicted)"


def figure1_populations(sensitivity: xr.Dataset, networks: list[str]) -> list[str]:
    """Brain first, then the networks in config order (baselines are left to other figures).
    Without recordings of perturbed images the surrogate's prediction stands in for the brain."""
    present = set(sensitivity["population"].values.tolist())
    brain = [BRAIN, BRAIN_WHITE_BOX] if BRAIN in present else [SURROGATE]
    return [p for p in [*brain, *networks] if p in present]


def figure1(sensitivity: xr.Dataset, networks: list[str]) -> tuple[Figure, xr.Dataset]:
    """s~(eps) of the brain and every network, with 95% CIs and both reference levels."""
    shown = sensitivity.sel(population=figure1_populations(sensitivity, networks))
    table = shown[["s_tilde", "ci_low", "ci_high"]].to_dataframe().reset_index()
    sns.set_theme(style="ticks", context="paper")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    palette = dict(zip(shown["population"].values, sns.color_palette("colorblind", shown.sizes["population"]), strict=True))
    dashes = {p: (2, 2) if p == BRAIN_WHITE_BOX else "" for p in shown["population"].values}
    sns.lineplot(
        data=table, x="eps", y="s_tilde", hue="population", style="population", palette=palette,
        dashes=dashes, markers=True, ax=ax, errorbar=None,
    )
    for name, group in table.groupby("population", sort=False):
        ax.fill_between(group["eps"], group["ci_low"], group["ci_high"], color=palette[name], alpha=0.2, linewidth=0)
    reference = BRAIN if BRAIN in shown["population"] else SURROGATE
    pair_level = float(sensitivity["random_pair_level"].sel(population=reference))
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1, label="1 s.d.")
    if np.isfinite(pair_level):
        ax.axhline(pair_level, color="0.3", linestyle="--", linewidth=1, label="random image pairs (recorded sites)")
    ax.set_xscale("log")
    # Black-box estimates are unbiased, so they can dip below zero: symlog keeps them visible.
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel(r"perturbation budget $\epsilon$ (L2, pixels in [0, 1])")
    ax.set_ylabel(r"normalised sensitivity $\tilde{s}(\epsilon)$")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    plotted = shown[["s_tilde", "ci_low", "ci_high", "random_pair_level"]].copy()
    plotted.attrs = {"one_sd_level": 1.0, "random_pair_level_brain": pair_level}
    return fig, plotted
