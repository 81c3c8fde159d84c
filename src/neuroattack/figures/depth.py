"""Figure 7, sensitivity by depth: s~(eps) of every network at each layer attack.layers names,
beside the brain's black-box estimate at the same eps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE
from neuroattack.config import depth_view
from neuroattack.figures.sensitivity import population_label

SUMMARY = ("s_tilde", "ci_low", "ci_high")


def population_at(network: str, layer: str, own_layer: str) -> str:
    """The sensitivity file's population of `network` at `layer`: its own name at its own layer."""
    return network if layer == own_layer else depth_view(network, layer)


def depth_numbers(
    sensitivity: xr.Dataset, layers: Mapping[str, Sequence[str]], own_layers: Mapping[str, str]
) -> xr.Dataset:
    """s~ and its interval per (network, depth, eps), depth = position in the network's list
    `layers` (shallow to deep; NaN past a shorter list), with the layer names as a coord; the
    brain's references per (reference, eps); and per (network, eps) `first_as_robust`, the
    first depth whose s~ is at most the brain's black-box estimate (-1: none)."""
    networks = list(layers)
    deepest = max(len(names) for names in layers.values())
    summary = {name: np.full((len(networks), deepest, sensitivity.sizes["eps"]), np.nan) for name in SUMMARY}
    names = np.full((len(networks), deepest), "", dtype=object)
    for row, network in enumerate(networks):
        for depth, layer in enumerate(layers[network]):
            population = sensitivity.sel(population=population_at(network, layer, own_layers[network]))
            for name in SUMMARY:
                summary[name][row, depth] = population[name].values
            names[row, depth] = layer
    present = [str(p) for p in sensitivity["population"].values]
    references = [p for p in (BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE) if p in present]
    brain = sensitivity[list(SUMMARY)].sel(population=references).rename(population="reference")
    numbers = xr.Dataset(
        {name: (("network", "depth", "eps"), values) for name, values in summary.items()},
        coords={
            "network": networks,
            "depth": np.arange(deepest),
            "eps": sensitivity["eps"].values,
            "layer": (("network", "depth"), names.astype(str)),
        },
    )
    numbers = numbers.merge(brain.rename({name: f"brain_{name}" for name in SUMMARY}))
    lower_bound = numbers["brain_s_tilde"].sel(reference=references[0])
    as_robust = (numbers["s_tilde"] <= lower_bound).values
    first = np.where(as_robust.any(axis=1), as_robust.argmax(axis=1), -1)
    numbers["first_as_robust"] = (("network", "eps"), first)
    numbers.attrs = {"brain_reference": references[0]}
    return numbers


def figure7(
    sensitivity: xr.Dataset, layers: Mapping[str, Sequence[str]], own_layers: Mapping[str, str]
) -> tuple[Figure, xr.Dataset]:
    """One panel per eps: s~ of every network by depth, with 95% intervals, and the brain's
    black-box estimate (where recorded; else the surrogate's prediction stands in) as a band."""
    numbers = depth_numbers(sensitivity, layers, own_layers)
    reference = str(numbers.attrs["brain_reference"])
    eps = numbers["eps"].values
    sns.set_theme(style="ticks", context="paper")
    fig, axes = plt.subplots(1, len(eps), figsize=(2.6 * len(eps) + 1.6, 3.2), sharey=True, squeeze=False)
    colours = sns.color_palette("viridis", len(numbers["network"]))
    shared_names = len({tuple(layers[n]) for n in layers}) == 1
    for ax, value in zip(axes[0], eps, strict=True):
        at = numbers.sel(eps=value)
        brain = at.sel(reference=reference)
        ax.axhspan(float(brain["brain_ci_low"]), float(brain["brain_ci_high"]), color="0.85", zorder=0)
        ax.axhline(float(brain["brain_s_tilde"]), color="black", linewidth=1.2, label=population_label(reference))
        dodge = 0.25 / max(len(colours), 1)  # side by side, so that intervals do not hide each other
        for number, (colour, network) in enumerate(zip(colours, numbers["network"].values, strict=True)):
            row = at.sel(network=network)
            depth = row["depth"].values[np.isfinite(row["s_tilde"].values)]
            ax.errorbar(
                depth + dodge * (number - (len(colours) - 1) / 2),
                row["s_tilde"].values[depth],
                yerr=np.abs(
                    np.vstack([row["ci_low"].values[depth], row["ci_high"].values[depth]])
                    - row["s_tilde"].values[depth]
                ),
                color=colour,
                marker="o",
                markersize=4,
                capsize=2,
                label=str(network),
            )
        ticks = numbers["depth"].values
        labels = numbers["layer"].values[0] if shared_names else [str(d + 1) for d in ticks]
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(rf"$\epsilon$ = {value:g}")
        ax.set_xlabel("layer" if shared_names else "layer (shallow to deep, as attack.layers lists them)")
    axes[0][0].set_ylabel(r"$\tilde{s}(\epsilon)$ (s.d. of clean responses)")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    return fig, numbers
