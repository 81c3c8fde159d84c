"""Figure 7, sensitivity by depth: s~(eps) of every network at each layer attack.layers names,
beside the brain's black-box estimate at the same eps; with like_for_like.layers, a second row
compares like with like: each network at each layer measured through the brain's black-box
pipeline, against the brain's black box."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE, measured_as_brain
from neuroattack.config import BRAIN, depth_view
from neuroattack.figures.sensitivity import population_label

SUMMARY = ("s_tilde", "ci_low", "ci_high")
LIKE_FOR_LIKE = "black_box_"  # prefix of the like-for-like row's variables: black_box_s_tilde, ...
ROW_TITLES = {  # each row's y label, where there are two
    "": "white box (each unit's own attack)",
    LIKE_FOR_LIKE: "black box (measured as the brain)",
}


def population_at(network: str, layer: str, own_layer: str) -> str:
    """The sensitivity file's population of `network` at `layer`: its own name at its own layer."""
    return network if layer == own_layer else depth_view(network, layer)


def by_depth(
    sensitivity: xr.Dataset,
    layers: Mapping[str, Sequence[str]],
    own_layers: Mapping[str, str],
    population: Callable[[str], str] = str,
) -> dict[str, np.ndarray]:
    """s~ and its interval (network, depth, eps) of `population(view)` for each network's views in
    depth order; NaN past a shorter list and where the sensitivity file lacks the population."""
    deepest = max(len(names) for names in layers.values())
    shape = (len(layers), deepest, sensitivity.sizes["eps"])
    summary = {name: np.full(shape, np.nan) for name in SUMMARY}
    present = {str(p) for p in sensitivity["population"].values}
    for row, network in enumerate(layers):
        for depth, layer in enumerate(layers[network]):
            name = population(population_at(network, layer, own_layers[network]))
            if name in present:
                for key in SUMMARY:
                    summary[key][row, depth] = sensitivity[key].sel(population=name).values
    return summary


def first_at_most(values: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Per (network, eps), the first depth whose value (network, depth, eps) is at most `bound`
    (eps); -1: none."""
    below = values <= bound[None, None, :]
    return np.where(below.any(axis=1), below.argmax(axis=1), -1)


def depth_numbers(
    sensitivity: xr.Dataset,
    layers: Mapping[str, Sequence[str]],
    own_layers: Mapping[str, str],
    transfer: xr.Dataset | None = None,
) -> xr.Dataset:
    """s~ and its interval per (network, depth, eps), depth = position in the network's list
    `layers` (shallow to deep; NaN past a shorter list), with the layer names as a coord; the
    brain's references per (reference, eps); and per (network, eps) `first_as_robust`, the
    first depth whose s~ is at most the brain's black-box estimate (-1: none). Where networks
    were measured as the brain at every depth (like_for_like.layers), the same for their black
    box (`black_box_s_tilde`, ...; NaN where not measured) and `first_as_robust_like_for_like`,
    black box against black box (-1: none, or not measured at every depth)."""
    networks = list(layers)
    deepest = max(len(names) for names in layers.values())
    names = np.full((len(networks), deepest), "", dtype=object)
    for row, network in enumerate(networks):
        names[row, : len(layers[network])] = list(layers[network])
    white = by_depth(sensitivity, layers, own_layers)
    present = [str(p) for p in sensitivity["population"].values]
    references = [p for p in (BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE) if p in present]
    brain = sensitivity[list(SUMMARY)].sel(population=references).rename(population="reference")
    dims = ("network", "depth", "eps")
    numbers = xr.Dataset(
        {name: (dims, values) for name, values in white.items()},
        coords={
            "network": networks,
            "depth": np.arange(deepest),
            "eps": sensitivity["eps"].values,
            "layer": (("network", "depth"), names.astype(str)),
        },
    )
    numbers = numbers.merge(brain.rename({name: f"brain_{name}" for name in SUMMARY}))
    lower_bound = numbers["brain_s_tilde"].sel(reference=references[0]).values
    numbers["first_as_robust"] = (("network", "eps"), first_at_most(white["s_tilde"], lower_bound))
    numbers.attrs = {"brain_reference": references[0]}
    black = by_depth(sensitivity, layers, own_layers, measured_as_brain)
    if references[0] == BRAIN_BLACK_BOX and np.isfinite(black["s_tilde"]).any():
        for name, values in black.items():
            numbers[f"{LIKE_FOR_LIKE}{name}"] = (dims, values)
        listed = names != ""
        measured = (np.isfinite(black["s_tilde"]).all(axis=2) | ~listed).all(axis=1)
        first = np.where(measured[:, None], first_at_most(black["s_tilde"], lower_bound), -1)
        numbers["first_as_robust_like_for_like"] = (("network", "eps"), first)
        numbers["measured_as_brain"] = ("network", measured)
        if transfer is not None:
            last = transfer["ratio"].isel(round=-1).reindex(eps=numbers["eps"].values)
            numbers["black_box_transfer"] = (dims, transfer_by_depth(last, layers, own_layers, deepest))
            numbers["brain_transfer"] = ("eps", last.sel(subject=BRAIN).values)
    return numbers


def transfer_by_depth(
    last: xr.DataArray, layers: Mapping[str, Sequence[str]], own_layers: Mapping[str, str], deepest: int
) -> np.ndarray:
    """The black box / white box ratio (network, depth, eps) of each network at each depth
    measured as the brain, from `last` (subject, eps: the last round's); NaN where not measured."""
    values = np.full((len(layers), deepest, last.sizes["eps"]), np.nan)
    subjects = {str(s) for s in last["subject"].values}
    for row, network in enumerate(layers):
        for depth, layer in enumerate(layers[network]):
            subject = population_at(network, layer, own_layers[network])
            if subject in subjects:
                values[row, depth] = last.sel(subject=subject).values
    return values


def figure7(
    sensitivity: xr.Dataset,
    layers: Mapping[str, Sequence[str]],
    own_layers: Mapping[str, str],
    transfer: xr.Dataset | None = None,
) -> tuple[Figure, xr.Dataset]:
    """One panel per eps: s~ of every network by depth, with 95% intervals, and the brain's
    black-box estimate (where recorded; else the surrogate's prediction stands in) as a band.
    With networks measured as the brain at every depth, a second row draws their black box
    against the brain's: bound against bound."""
    numbers = depth_numbers(sensitivity, layers, own_layers, transfer)
    rows = ["", LIKE_FOR_LIKE] if f"{LIKE_FOR_LIKE}s_tilde" in numbers else [""]
    eps = numbers["eps"].values
    sns.set_theme(style="ticks", context="paper")
    fig, axes = plt.subplots(
        len(rows), len(eps), figsize=(2.6 * len(eps) + 1.6, 3.2 * len(rows)), sharey="row", squeeze=False
    )
    shared_names = len({tuple(layers[n]) for n in layers}) == 1
    for row_axes, prefix in zip(axes, rows, strict=True):
        for ax, value in zip(row_axes, eps, strict=True):
            draw_panel(ax, numbers.sel(eps=value), prefix, shared_names)
            title = rf"$\epsilon$ = {value:g}"
            if prefix and "brain_transfer" in numbers:
                title += f"\nthe brain's bound: {float(numbers['brain_transfer'].sel(eps=value)):.2f} of its truth"
            ax.set_title(title, fontsize=8)
        label = r"$\tilde{s}(\epsilon)$ (s.d. of clean responses)"
        row_axes[0].set_ylabel(label if len(rows) == 1 else f"{ROW_TITLES[prefix]}\n{label}", fontsize=8)
        row_axes[-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    return fig, numbers


def draw_panel(ax: Axes, at: xr.Dataset, prefix: str, shared_names: bool) -> None:
    """One eps: the brain's reference as a line in its interval's band, and every network's s~ by
    depth (`prefix`: "" white box, LIKE_FOR_LIKE black box) with its interval."""
    reference = str(at.attrs["brain_reference"])
    brain = at.sel(reference=reference)
    ax.axhspan(float(brain["brain_ci_low"]), float(brain["brain_ci_high"]), color="0.85", zorder=0)
    ax.axhline(float(brain["brain_s_tilde"]), color="black", linewidth=1.2, label=population_label(reference))
    networks = at["network"].values
    colours = sns.color_palette("viridis", len(networks))
    dodge = 0.25 / max(len(colours), 1)  # side by side, so that intervals do not hide each other
    for number, (colour, network) in enumerate(zip(colours, networks, strict=True)):
        row = at.sel(network=network)
        s_tilde = row[f"{prefix}s_tilde"].values
        depth = row["depth"].values[np.isfinite(s_tilde)]
        bounds = np.vstack([row[f"{prefix}ci_low"].values[depth], row[f"{prefix}ci_high"].values[depth]])
        ax.errorbar(
            depth + dodge * (number - (len(colours) - 1) / 2),
            s_tilde[depth],
            yerr=np.abs(bounds - s_tilde[depth]),
            color=colour,
            marker="o",
            markersize=4,
            capsize=2,
            label=str(network),
        )
        if prefix and f"{prefix}transfer" in at:  # how much of its own truth each bound recovers
            for x, y, ratio in zip(depth, s_tilde[depth], row[f"{prefix}transfer"].values[depth], strict=True):
                ax.annotate(f"{ratio:.2f}", (x, y), fontsize=5, color=colour, xytext=(3, 3), textcoords="offset points")
    ticks = at["depth"].values
    labels = at["layer"].values[0] if shared_names else [str(d + 1) for d in ticks]
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layer" if shared_names else "layer (shallow to deep, as attack.layers lists them)")
