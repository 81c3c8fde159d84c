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
    """Brain first (the black-box estimate, the surrogate's prediction beside it as the
    upper reference, the white-box truth where the brain is simulated), then the networks
    (baselines are left to other figures). Without recordings of perturbed images the
    surrogate's prediction stands in for the brain."""
    present = set(sensitivity["population"].values.tolist())
    brain = [BRAIN, SURROGATE, BRAIN_WHITE_BOX] if BRAIN in present else [SURROGATE]
    return [p for p in [*brain, *network_populations(sensitivity)] if p in present]


# How the brain's populations are drawn and named in figure 1; networks get the rest.
FIGURE1_LABELS = {
    BRAIN: "brain, black box (a lower bound)",
    SURROGATE: "surrogate's prediction (upper reference)",
    BRAIN_WHITE_BOX: "brain, white box (truth, in silico)",
}
FIGURE1_STYLES: dict[str, dict[str, Any]] = {
    BRAIN: {"color": "black", "marker": "^", "linestyle": "-", "linewidth": 2.0},
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
    return FIGURE1_LABELS.get(population, population)


def figure1(sensitivity: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """s~(eps) of the brain and every network, with 95% CIs and both reference levels, on
    a linear axis (the black-box estimate can be below zero where the brain's change is
    lost in its noise). The black-box estimate is marked as the lower bound it is."""
    populations = figure1_populations(sensitivity)
    shown = sensitivity.sel(population=populations)
    styles = figure1_style(populations)
    brain_is_surrogate = BRAIN not in populations
    sns.set_theme(style="ticks", context="paper")
    fig, ax = plt.subplots(figsize=(7.4, 4.2))
    eps = shown["eps"].values
    for name in populations:
        row = shown.sel(population=name)
        style = styles[name]
        ax.fill_between(eps, row["ci_low"], row["ci_high"], color=style["color"], alpha=0.15, linewidth=0)
        ax.plot(eps, row["s_tilde"], markersize=6, label=figure1_label(name, brain_is_surrogate), **style)
    if not brain_is_surrogate:
        _mark_lower_bound(ax, shown.sel(population=BRAIN))
    pair_level = float(sensitivity["random_pair_level"].sel(population=SURROGATE if brain_is_surrogate else BRAIN))
    _reference_levels(ax, pair_level)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_xlabel(r"perturbation budget $\epsilon$ (L2, pixels in [0, 1])")
    ax.set_ylabel(r"normalised sensitivity $\tilde{s}(\epsilon)$ (s.d. of clean responses)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    plotted = shown[["s_tilde", "ci_low", "ci_high", "random_pair_level"]].copy()
    plotted = plotted.assign_coords(
        label=("population", [figure1_label(p, brain_is_surrogate) for p in populations]),
        colour=("population", [styles[p]["color"] for p in populations]),
        marker=("population", [styles[p]["marker"] for p in populations]),
    )
    plotted.attrs = {"one_sd_level": 1.0, "random_pair_level_brain": pair_level, "y_scale": "linear"}
    return fig, plotted


def _mark_lower_bound(ax: Axes, brain: xr.Dataset) -> None:
    """Upward arrows from the black-box estimate and a note: the truth lies above it."""
    eps, values = brain["eps"].values, brain["s_tilde"].values
    span = float(np.nanmax(brain["ci_high"].values) - min(0.0, float(np.nanmin(brain["ci_low"].values))))
    for x, y in zip(eps, values, strict=True):
        ax.annotate(
            "", xy=(x, y + 0.12 * max(span, 0.1)), xytext=(x, y), arrowprops={"arrowstyle": "->", "color": "black"}
        )
    ax.annotate(
        "black box = lower bound:\nthe brain's true sensitivity\nlies above",
        xy=(eps[-1], values[-1]),
        xytext=(6, -26),
        textcoords="offset points",
        fontsize=7,
        ha="left",
    )


def _reference_levels(ax: Axes, pair_level: float) -> None:
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


# --- figure 4: coverage ----------------------------------------------------------------


def main_estimate(coverage: xr.Dataset) -> str:
    """The brain's estimate figure 4 draws: the black box where perturbed images were
    recorded, else the surrogate's prediction."""
    estimates = coverage["estimate"].values.tolist()
    return BRAIN if BRAIN in estimates else SURROGATE


def figure4(coverage: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """Left: every site's s~_i(eps) (mean over images, 95% interval over images), sites
    sorted by the largest eps, against the 1-s.d. and random-pair levels. Right: per clean
    image, the distribution over sites of the normalised change at each eps; the legend
    gives the fraction of (site, image) pairs moved by at least one s.d."""
    estimate = main_estimate(coverage)
    shown = coverage.sel(estimate=estimate)
    eps = [float(e) for e in shown["eps"].values]
    colours = dict(zip(eps, sns.color_palette("viridis", len(eps)), strict=True))
    order = np.argsort(-shown["site_s_tilde"].isel(eps=-1).values, kind="stable")
    sns.set_theme(style="ticks", context="paper")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0), gridspec_kw={"width_ratios": [1, 1.3]})
    _draw_sites(left, shown.isel(site=order), colours)
    if BRAIN_WHITE_BOX in coverage["estimate"].values and estimate != BRAIN_WHITE_BOX:
        truth = coverage["site_s_tilde"].sel(estimate=BRAIN_WHITE_BOX).isel(eps=-1, site=order).values
        left.scatter(
            np.arange(len(order)) + 0.25,
            truth,
            marker="D",
            facecolors="none",
            edgecolors="#cc79a7",
            s=22,
            zorder=3,
            label=rf"white-box truth, $\epsilon$ = {eps[-1]:g}",
        )
        left.legend(fontsize=7, frameon=False, loc="upper right")
    _reference_levels(left, float(coverage.attrs["random_pair_level"]))
    left.set_title(f"every site: {FIGURE1_LABELS.get(estimate, estimate)}", fontsize=8)
    _draw_images(right, shown, colours)
    sns.despine(fig)
    fig.tight_layout()
    plotted = coverage.assign_coords(site_rank=("site", np.argsort(order)))
    plotted.attrs = {**coverage.attrs, "drawn_estimate": estimate}
    return fig, plotted


def _draw_sites(ax: Axes, shown: xr.Dataset, colours: dict[float, Any]) -> None:
    names = [str(n) for n in shown["neuroid_id"].values]
    positions = np.arange(len(names))
    offsets = np.linspace(-0.25, 0.25, len(colours)) if len(colours) > 1 else [0.0]
    for offset, (eps, colour) in zip(offsets, colours.items(), strict=True):
        row = shown.sel(eps=eps)
        mean = row["site_s_tilde"].values
        ax.errorbar(
            positions + offset,
            mean,
            yerr=[mean - row["site_ci_low"].values, row["site_ci_high"].values - mean],
            fmt="o",
            markersize=3.5,
            linewidth=0.8,
            color=colour,
            label=rf"$\epsilon$ = {eps:g}",
        )
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.set_xticks(positions, names, rotation=90, fontsize=6)
    ax.set_xlabel("site (sorted by its sensitivity at the largest eps)")
    ax.set_ylabel(r"$\tilde{s}_i(\epsilon)$ (s.d. of the site's clean responses)")
    ax.legend(fontsize=7, frameon=False, loc="upper right")


def _draw_images(ax: Axes, shown: xr.Dataset, colours: dict[float, Any]) -> None:
    table = shown["pair_change"].to_dataframe(name="change").reset_index()
    table["eps"] = table["eps"].astype(float)
    fractions = {float(e): float(shown["moved_fraction"].sel(eps=e)) for e in shown["eps"].values}
    labels = {
        eps: rf"$\epsilon$ = {eps:g}: {100 * fractions[eps]:.0f}% of pairs moved $\geq$ 1 s.d." for eps in colours
    }
    table["budget"] = table["eps"].map(labels)
    sns.boxplot(
        data=table,
        x="image",
        y="change",
        hue="budget",
        hue_order=list(labels.values()),
        palette=[colours[eps] for eps in labels],
        fliersize=1.5,
        linewidth=0.7,
        ax=ax,
    )
    ax.axhline(1.0, color="#3182bd", linewidth=1.2, linestyle="-", zorder=0.5)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    ax.set_xlabel("clean image")
    ax.set_ylabel("normalised change per site (s.d.)")
    ax.set_title("every clean image: the change over sites (line: 1 s.d.)", fontsize=8)
    ax.legend(fontsize=6.5, frameon=False, loc="upper left", title=None)


# --- figure 2: examples ----------------------------------------------------------------


def amplified(perturbation: np.ndarray) -> tuple[np.ndarray, float]:
    """A perturbation (pixels in [-1, 1]) scaled so its largest pixel fills the range
    around mid-grey, and the factor it was scaled by."""
    largest = float(np.abs(perturbation).max())
    factor = 0.5 / largest if largest > 0 else 1.0
    return np.clip(0.5 + factor * perturbation, 0.0, 1.0), factor


def figure2(examples: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """For each example site: the clean image and its perturbed images at every eps (both
    directions), each perturbation amplified below it, and beside them the site's predicted
    and recorded responses against its clean response and its range over natural images."""
    eps = [float(e) for e in examples["eps"].values]
    directions = [str(d) for d in examples["direction"].values]
    columns = [(e, d) for e in eps for d in directions]
    n_sites = examples.sizes["site"]
    sns.set_theme(style="ticks", context="paper")
    fig = plt.figure(figsize=(0.9 * (len(columns) + 1) + 4.6, 2.1 * n_sites))
    grid = fig.add_gridspec(
        2 * n_sites, len(columns) + 3, width_ratios=[1] * (len(columns) + 1) + [0.5, 4.0], wspace=0.12, hspace=0.45
    )
    factors = np.zeros((n_sites, len(eps), len(directions)))
    for site in range(n_sites):
        row = examples.isel(site=site)
        clean_ax = fig.add_subplot(grid[2 * site, 0])
        _image(clean_ax, row["clean_pixels"].values, "clean")
        clean_ax.set_ylabel(f"site {row['neuroid_id'].values}", fontsize=7)
        fig.add_subplot(grid[2 * site + 1, 0]).axis("off")
        for column, (e, direction) in enumerate(columns, start=1):
            cell = row.sel(eps=e, direction=direction)
            arrow = "+" if direction == "increase" else "-"
            _image(fig.add_subplot(grid[2 * site, column]), cell["perturbed"].values, rf"$\epsilon$={e:g} {arrow}")
            picture, factor = amplified(cell["perturbation"].values)
            factors[site, eps.index(e), directions.index(direction)] = factor
            _image(fig.add_subplot(grid[2 * site + 1, column]), picture, rf"$\delta \times$ {factor:.0f}")
        responses = fig.add_subplot(grid[2 * site : 2 * site + 2, -1])
        _draw_example_responses(responses, row, eps, directions, legend=site == 0)
    responses.set_xlabel(r"budget $\epsilon$ (L2, pixels in [0, 1])", fontsize=7)
    fig.suptitle(
        f"clean image {examples.attrs['stimulus_id']}: perturbed images (top), perturbations amplified (below)",
        fontsize=8,
    )
    plotted = examples.copy()
    plotted["amplification"] = (("site", "eps", "direction"), factors)
    return fig, plotted


def _image(ax: Axes, pixels: np.ndarray, title: str) -> None:
    ax.imshow(pixels, interpolation="nearest")
    ax.set_title(title, fontsize=6, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_example_responses(ax: Axes, row: xr.Dataset, eps: list[float], directions: list[str], legend: bool) -> None:
    ax.axhspan(
        float(row["natural_min"]), float(row["natural_max"]), color="0.9", zorder=0, label="natural images (range)"
    )
    recorded_clean = float(row["recorded_clean"]) if "recorded_clean" in row else None
    clean = recorded_clean if recorded_clean is not None else float(row["predicted_clean"])
    ax.axhline(
        clean, color="0.3", linewidth=1, label="clean image" + (" (recorded)" if recorded_clean is not None else "")
    )
    markers = {"increase": "^", "decrease": "v"}
    for direction in directions:
        colour = "#d55e00" if direction == "increase" else "#0072b2"
        predicted = row["predicted"].sel(direction=direction).values
        ax.plot(
            eps,
            predicted,
            linestyle=":",
            marker=markers.get(direction, "o"),
            mfc="white",
            color=colour,
            label=f"{direction}: predicted",
        )
        if "recorded" in row:
            recorded = row["recorded"].sel(direction=direction).values
            ax.plot(
                eps,
                recorded,
                linestyle="-",
                marker=markers.get(direction, "o"),
                color=colour,
                label=f"{direction}: recorded",
            )
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_ylabel("response (spike count)", fontsize=7)
    ax.tick_params(labelsize=6)
    if legend:
        ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


# --- the s~ table of figure 1 (for the report) ------------------------------------------


def sensitivity_table(sensitivity: xr.Dataset) -> str:
    """Figure 1's s~(eps) as an HTML page: one row per population (figure 1's labels), one
    column per eps, each cell the estimate and its 95% interval."""
    populations = figure1_populations(sensitivity)
    brain_is_surrogate = BRAIN not in populations
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


# --- figure 5: choosing the surrogate -----------------------------------------------------

CRITERION_LABELS = {
    "cka": "linear CKA to the sites",
    "predictivity": "predictivity (ceiled: $r^2$ / ceiling)",
    "transfer": "transfer without a mapping\n(r.m.s. change per site, s.d.)",
}


def figure5(screening: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """One bar panel per criterion (95% intervals; the raw predictivity r as dots; the pick under
    each criterion outlined) and the transfer matrix: each attacker's site-model perturbations on
    every target, relative to the target's own attack."""
    candidates = [str(c) for c in screening["candidate"].values]
    sns.set_theme(style="ticks", context="paper")
    fig, axes = plt.subplots(
        1, 4, figsize=(14.5, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.5 + 0.15 * len(candidates)]}
    )
    colours = dict(zip(candidates, sns.color_palette("colorblind", len(candidates)), strict=True))
    for ax, criterion in zip(axes[:3], CRITERION_LABELS, strict=True):
        _criterion_bars(ax, screening, criterion, candidates, colours)
    _transfer_heatmap(axes[3], screening)
    sns.despine(fig)
    fig.tight_layout()
    variables = [f"{criterion}{suffix}" for criterion in CRITERION_LABELS for suffix in ("", "_low", "_high")] + [
        "predictivity_r",
        "ceiling",
        "transfer_relative",
        "transfer_change",
        "own_change",
    ]
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
