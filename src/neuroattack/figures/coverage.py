"""Figure 4 (coverage: every site, every image) and figure 2 (examples: clean and perturbed
images beside the responses they evoked)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE
from neuroattack.figures.sensitivity import FIGURE1_LABELS, draw_reference_levels

# --- figure 4: coverage ----------------------------------------------------------------


def main_estimate(coverage: xr.Dataset) -> str:
    """The brain's estimate figure 4 draws: the black box where perturbed images were
    recorded, else the surrogate's prediction."""
    estimates = coverage["population"].values.tolist()
    return BRAIN_BLACK_BOX if BRAIN_BLACK_BOX in estimates else SURROGATE


def figure4(coverage: xr.Dataset) -> tuple[Figure, xr.Dataset]:
    """Left: every site's s~_i(eps) (mean over images, 95% interval over images), sites
    sorted by the largest eps, against the 1-s.d. and random-pair levels. Right: per clean
    image, the distribution over sites of the normalised change at each eps; the legend
    gives the fraction of (site, image) pairs moved by at least one s.d."""
    estimate = main_estimate(coverage)
    shown = coverage.sel(population=estimate)
    eps = [float(e) for e in shown["eps"].values]
    colours = dict(zip(eps, sns.color_palette("viridis", len(eps)), strict=True))
    order = np.argsort(-shown["site_s_tilde"].isel(eps=-1).values, kind="stable")
    sns.set_theme(style="ticks", context="paper")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0), gridspec_kw={"width_ratios": [1, 1.3]})
    _draw_sites(left, shown.isel(site=order), colours)
    if BRAIN_WHITE_BOX in coverage["population"].values and estimate != BRAIN_WHITE_BOX:
        truth = coverage["site_s_tilde"].sel(population=BRAIN_WHITE_BOX).isel(eps=-1, site=order).values
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
    draw_reference_levels(left, float(coverage.attrs["random_pair_level"]))
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
