"""Figure 8, off-target specificity: how far each perturbation moved the site it was aimed at,
and how far it moved the other sites, by eps and round (`analysis.specificity`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

SERIES = {  # variable: (label, colour index)
    "target_change": ("aimed-at site (black box)", 0),
    "offtarget_change": ("other sites (r.m.s.)", 1),
}


def _with_interval(ax: Axes, numbers: xr.Dataset, name: str, label: str, colour: object) -> None:
    eps = numbers["eps"].values
    ax.plot(eps, numbers[name].values, marker="o", markersize=4, color=colour, label=label)
    ax.fill_between(eps, numbers[f"{name}_low"].values, numbers[f"{name}_high"].values, color=colour, alpha=0.2)


def figure8(numbers: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """Left: the last round's change of the aimed-at site and of the other sites, with the
    recorded random directions' change (and in silico the noise-free truth, dashed). Right: the
    specificity ratio by round."""
    last = numbers.sel(round=int(numbers["round"].max()))
    sns.set_theme(style="ticks", context="paper")
    palette = sns.color_palette("colorblind")
    fig, (changes, ratio) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for name, (label, colour) in SERIES.items():
        _with_interval(changes, last, name, label, palette[colour])
        if f"true_{name}" in last:
            changes.plot(last["eps"], last[f"true_{name}"], linestyle="--", color=palette[colour], label="  truth")
    changes.plot(last["eps"], last["random_change"], color="0.5", linestyle=":", label="random direction (r.m.s.)")
    changes.set_title(f"round {int(last['round'])}")
    changes.set_ylabel("change (s.d. of clean responses)")
    greens = sns.color_palette("crest", len(numbers["round"]))
    for shade, number in zip(greens, numbers["round"].values, strict=True):
        _with_interval(ratio, numbers.sel(round=number), "specificity", f"round {int(number)}", shade)
    if "true_specificity" in last:
        ratio.plot(last["eps"], last["true_specificity"], color="black", linestyle="--", label="truth (last round)")
    ratio.axhline(1.0, color="0.6", linewidth=0.8)
    ratio.set_ylabel("specificity: aimed-at / other sites")
    for ax in (changes, ratio):
        ax.set_xscale("log")
        ax.set_xlabel(r"$\epsilon$ (L2, pixels in [0, 1])")
        ax.legend(fontsize=7, frameon=False)
    sns.despine(fig)
    fig.tight_layout()
    return fig, numbers
