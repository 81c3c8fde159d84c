"""Figure 3: category preference, targeted attacks against the site's preferred natural images."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

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
