"""Figures drawn with seaborn; each returns the figure and the numbers it plots."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neuroattack.sensitivity import BRAIN_BLACK_BOX as BRAIN
from neuroattack.sensitivity import BRAIN_WHITE_BOX, SURROGATE, random_directions


def network_populations(sensitivity: xr.Dataset) -> list[str]:
    """The networks' own populations, in the order of the sensitivity file."""
    named = {BRAIN, BRAIN_WHITE_BOX, SURROGATE}
    populations = [str(p) for p in sensitivity["population"].values]
    baselines = {random_directions(p) for p in populations} | {random_directions("surrogate")}
    return [p for p in populations if p not in named and p not in baselines]


def figure1_populations(sensitivity: xr.Dataset) -> list[str]:
    """Brain first, then the networks (baselines are left to other figures). Without
    recordings of perturbed images the surrogate's prediction stands in for the brain."""
    present = set(sensitivity["population"].values.tolist())
    brain = [BRAIN, BRAIN_WHITE_BOX] if BRAIN in present else [SURROGATE]
    return [p for p in [*brain, *network_populations(sensitivity)] if p in present]


def figure1(sensitivity: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """s~(eps) of the brain and every network, with 95% CIs and both reference levels."""
    shown = sensitivity.sel(population=figure1_populations(sensitivity))
    table = shown[["s_tilde", "ci_low", "ci_high"]].to_dataframe().reset_index()
    sns.set_theme(style="ticks", context="paper")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    palette = dict(
        zip(shown["population"].values, sns.color_palette("colorblind", shown.sizes["population"]), strict=True)
    )
    dashes: dict[str, Any] = {p: (2, 2) if p == BRAIN_WHITE_BOX else "" for p in shown["population"].values}
    sns.lineplot(
        data=table,
        x="eps",
        y="s_tilde",
        hue="population",
        style="population",
        palette=palette,
        dashes=dashes,
        markers=True,
        ax=ax,
        errorbar=None,
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


# --- figure 3: category preference ----------------------------------------------------

PANEL_TITLES = {
    "increase": "least-preferred categories, pushed up",
    "decrease": "most-preferred categories, pushed down",
}


def figure3_sites(preference: xr.Dataset, count: int) -> np.ndarray:
    """The first `count` sites whose predicted preferred-category mean is positive
    (a ratio to it is only meaningful then)."""
    if count < 1:
        raise ValueError(f"figure 3 needs at least one site, got {count}")
    reference = preference["preferred_mean"].sel(reference="predicted").values
    usable = np.flatnonzero(np.isfinite(reference) & (reference > 0))
    if len(usable) == 0:
        raise ValueError("no site has a positive predicted response to its preferred category; nothing to normalise by")
    return usable[:count]


def normalised_responses(preference: xr.Dataset, sites: np.ndarray) -> xr.Dataset:
    """Responses of the shown sites divided by each site's predicted preferred-category
    mean (1 = the preferred natural images). eps = 0 is the clean images."""
    shown = preference.isel(site=sites)
    scale = shown["preferred_mean"].sel(reference="predicted", drop=True)
    clean = (shown["clean_predicted"] / scale).expand_dims(eps=[0.0], axis=-1)
    attacked = shown["attacked_predicted"] / scale
    per_image = xr.concat([clean, attacked], dim="eps")
    natural = shown["natural_response"].sel(reference="predicted", drop=True) / scale
    references = {
        name: shown[name].sel(reference="predicted", drop=True) / scale
        for name in ("natural_max", "natural_min", "nonpreferred_mean")
    }
    return xr.Dataset(
        {
            "normalised_mean": per_image.mean("image"),
            "normalised_low": per_image.min("image"),
            "normalised_high": per_image.max("image"),
            "natural_normalised": natural,
            **{f"{name}_normalised": values for name, values in references.items()},
            "preferred_mean_predicted": scale,
        },
        coords={"neuroid_id": shown["neuroid_id"]},
    )


def figure3(preference: xr.Dataset, sites: int = 6) -> tuple[Figure, xr.Dataset]:
    """Predicted response vs eps (one line per site, mean over its images; band = range
    over images), normalised per site so 1 = its preferred natural category; beside it,
    the distribution of each site's responses to every natural image."""
    plotted = normalised_responses(preference, figure3_sites(preference, sites))
    directions = [str(d) for d in plotted["direction"].values] if "direction" in plotted.dims else [None]
    names = [str(n) for n in plotted["neuroid_id"].values]
    sns.set_theme(style="ticks", context="paper")
    palette = dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))
    fig, axes = plt.subplots(
        1,
        len(directions) + 1,
        figsize=(3.4 * len(directions) + 2.2, 3.6),
        sharey=True,
        gridspec_kw={"width_ratios": [3] * len(directions) + [2]},
    )
    for ax, direction in zip(axes[:-1], directions, strict=True):
        _draw_direction(
            ax, plotted if direction is None else plotted.sel(direction=direction), names, palette, direction
        )
    _draw_natural(axes[-1], plotted, names, palette)
    axes[0].set_ylabel("predicted response / preferred-category mean")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    sns.despine(fig)
    fig.tight_layout()
    plotted.attrs = {"preferred_level": 1.0, "normalisation": "per site, by its predicted preferred-category mean"}
    return fig, plotted


def _reference_lines(ax: Axes, shown: xr.Dataset) -> None:
    ax.axhline(1.0, color="0.2", linestyle="-", linewidth=1, label="preferred category (natural)")
    ax.axhline(
        float(shown["natural_max_normalised"].mean()),
        color="0.4",
        linestyle="--",
        linewidth=1,
        label="max natural image (mean over sites)",
    )
    ax.axhline(
        float(shown["nonpreferred_mean_normalised"].mean()),
        color="0.4",
        linestyle=":",
        linewidth=1,
        label="least-preferred category (mean over sites)",
    )


def _draw_direction(
    ax: Axes, shown: xr.Dataset, names: list[str], palette: dict[str, Any], direction: str | None
) -> None:
    table = shown["normalised_mean"].to_dataframe().reset_index()
    table["site"] = [names[i] for i in table["site"]]
    sns.lineplot(
        data=table, x="eps", y="normalised_mean", hue="site", palette=palette, marker="o", errorbar=None, ax=ax
    )
    eps = shown["eps"].values
    for index, name in enumerate(names):
        ax.fill_between(
            eps,
            shown["normalised_low"].isel(site=index),
            shown["normalised_high"].isel(site=index),
            color=palette[name],
            alpha=0.12,
            linewidth=0,
        )
    _reference_lines(ax, shown)
    ax.set_xlabel(r"budget $\epsilon$ (L2, pixels in [0, 1]; 0 = clean)")
    if direction is not None:
        ax.set_title(PANEL_TITLES.get(direction, direction), fontsize=8)
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()


def _draw_natural(ax: Axes, plotted: xr.Dataset, names: list[str], palette: dict[str, Any]) -> None:
    values = plotted["natural_normalised"].values  # site, natural
    table = pd.DataFrame({"site": np.repeat(names, values.shape[1]), "response": values.ravel()})
    sns.boxplot(
        data=table,
        x="site",
        y="response",
        hue="site",
        palette=palette,
        fliersize=1.5,
        linewidth=0.8,
        legend=False,
        ax=ax,
    )
    ax.scatter(names, plotted["natural_max_normalised"].values, marker="v", color="0.2", s=12, zorder=3)
    ax.axhline(1.0, color="0.2", linestyle="-", linewidth=1)
    ax.set_xlabel("site")
    ax.set_title("natural images", fontsize=8)
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)


# --- figure 6: the closed loop ----------------------------------------------------------

FIGURE6_DASHES = {"brain (white box)": (2, 2), "surrogate (predicted)": (1, 1)}


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
                label=name,
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
