"""Figure 5: choosing the surrogate (CKA, predictivity, transfer, the transfer matrix)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# --- figure 5: choosing the surrogate -----------------------------------------------------

CRITERION_LABELS = {
    "cka": "linear CKA to the sites",
    "predictivity": "predictivity (ceiled: $r^2$ / ceiling)",
    "transfer": "transfer without a mapping\n(r.m.s. change per site, s.d.)",
}


def figure5(screening: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """One bar panel per criterion (95% intervals; the raw predictivity r as dots; the pick under
    each criterion outlined) and the transfer matrix: each attacker's site-model perturbations on
    every target, relative to the target's own attack. With per-layer scores (surrogate.layer:
    auto) a fifth panel: each scored network's predictivity by layer, its best layer marked."""
    candidates = [str(c) for c in screening["candidate"].values]
    by_layer = "layer_predictivity" in screening
    sns.set_theme(style="ticks", context="paper")
    ratios = [1, 1, 1, 1.5 + 0.15 * len(candidates)] + ([1.4] if by_layer else [])
    fig, axes = plt.subplots(1, len(ratios), figsize=(14.5 + 3.5 * by_layer, 3.6), gridspec_kw={"width_ratios": ratios})
    colours = dict(zip(candidates, sns.color_palette("colorblind", len(candidates)), strict=True))
    for ax, criterion in zip(axes[:3], CRITERION_LABELS, strict=True):
        _criterion_bars(ax, screening, criterion, candidates, colours)
    _transfer_heatmap(axes[3], screening)
    if by_layer:
        _predictivity_by_layer(axes[4], screening, colours)
    sns.despine(fig)
    fig.tight_layout()
    variables = [f"{criterion}{suffix}" for criterion in CRITERION_LABELS for suffix in ("", "_low", "_high")] + [
        "predictivity_r",
        "ceiling",
        "transfer_relative",
        "transfer_change",
        "own_change",
    ]
    if by_layer:
        variables += ["layer_predictivity", "layer_predictivity_low", "layer_predictivity_high", "best_layer"]
    plotted = screening[variables].copy()
    plotted.attrs = {key: screening.attrs[key] for key in screening.attrs if key.startswith("pick_by_")}
    return fig, plotted


def _criterion_bars(
    ax: Axes, screening: xr.Dataset, criterion: str, candidates: list[str], colours: dict[str, Any]
) -> None:
    values = screening[criterion].values.astype(float)
    low, high = screening[f"{criterion}_low"].values, screening[f"{criterion}_high"].values
    positions = np.arange(len(candidates))
    ax.bar(positions, np.nan_to_num(values), color=[colours[c] for c in candidates], width=0.7)
    errors = np.abs(np.stack([values - low, high - values]))
    ax.errorbar(positions, values, yerr=errors, fmt="none", ecolor="0.2", capsize=3, linewidth=1)
    pick = screening.attrs.get(f"pick_by_{criterion}", "")
    if pick in candidates:
        ax.bar(candidates.index(pick), values[candidates.index(pick)], width=0.7, fill=False, edgecolor="0.1", lw=1.8)
    if criterion == "predictivity":
        ax.scatter(positions, screening["predictivity_r"].values, color="0.1", s=14, zorder=3, label="raw r")
        ax.legend(fontsize=7, frameon=False)
    if not np.isfinite(values).any():
        ax.text(0.5, 0.5, "needs recordings of\nperturbed images", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set_xticks(positions, candidates, rotation=45, ha="right", fontsize=7)
    ax.set_title(CRITERION_LABELS[criterion], fontsize=8)


def _transfer_heatmap(ax: Axes, screening: xr.Dataset) -> None:
    relative = screening["transfer_relative"].to_pandas()
    sns.heatmap(
        relative,
        annot=True,
        fmt=".2f",
        cmap="viridis",
        vmin=0,
        cbar_kws={"label": "relative to the target's own attack"},
        ax=ax,
        annot_kws={"fontsize": 7},
    )
    ax.set_xlabel("target (site models, or the brain's responses)")
    ax.set_ylabel("attacker (site models)")
    ax.set_title(rf"transfer matrix at $\epsilon$ = {screening.attrs['transfer_eps']:g}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="y", labelrotation=0)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")


def _predictivity_by_layer(ax: Axes, screening: xr.Dataset, colours: dict[str, Any]) -> None:
    """Every network scored at more than its own layer; the layers any of them was scored at."""
    shown = [c for c in screening["candidate"].values if screening["layer_predictivity"].sel(candidate=c).count() > 1]
    scores = screening.sel(candidate=shown)
    scores = scores.sel(layer=scores["layer_predictivity"].notnull().any("candidate"))
    layers = [str(layer) for layer in scores["layer"].values]
    positions = np.arange(len(layers))
    for candidate in shown:
        row = scores.sel(candidate=candidate)
        values = row["layer_predictivity"].values.astype(float)
        scored = np.isfinite(values)
        errors = np.abs(
            np.stack([values - row["layer_predictivity_low"].values, row["layer_predictivity_high"].values - values])
        )
        colour = colours[str(candidate)]
        ax.errorbar(
            positions[scored],
            values[scored],
            yerr=errors[:, scored],
            color=colour,
            marker="o",
            ms=4,
            capsize=2,
            label=str(candidate),
        )
        best = layers.index(str(row["best_layer"].values))
        ax.scatter([best], [values[best]], s=90, facecolors="none", edgecolors=colour, linewidths=1.6, zorder=3)
    ax.set_xticks(positions, layers, rotation=45, ha="right", fontsize=7)
    ax.set_title("predictivity by layer (ceiled; best circled)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
