"""The report's headline, the first lines of its landing page: what was run, figure 1's s~
table with its 95% intervals, and where the brain lies among the networks at each eps.

Placement is judged by the intervals alone: the brain is more sensitive than a network whose
interval lies wholly below its own, less sensitive than one wholly above, and cannot be told
apart from one whose interval overlaps its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

import numpy as np
import xarray as xr

from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX as BRAIN
from neuroattack.analysis.sensitivity import BRAIN_WHITE_BOX, MEASURED_PREFIX, SURROGATE
from neuroattack.config import PENULTIMATE
from neuroattack.figures.sensitivity import (
    figure1_label,
    figure1_populations,
    measured_populations,
    network_populations,
)

LIKE_FOR_LIKE = "like_for_like"  # the brain's black box placed among the networks' own (a sentence's key)

# How the sentences name each of the brain's populations.
SUBJECTS = {
    BRAIN: "the brain's black-box estimate (a lower bound)",
    LIKE_FOR_LIKE: "like for like, the brain's black-box estimate against the networks' own",
    BRAIN_WHITE_BOX: "the simulated brain's white-box truth",
    SURROGATE: "IT as the surrogate predicts it (no recordings of perturbed images)",
}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


@dataclass(frozen=True)
class Placement:
    """The networks, by name, against one brain interval at one eps."""

    more_than: tuple[str, ...]  # their interval lies wholly below the brain's
    less_than: tuple[str, ...]  # wholly above
    overlapping: tuple[str, ...]  # cannot be told apart
    unmeasured: tuple[str, ...]  # no finite interval on one side


@dataclass(frozen=True)
class RunFacts:
    """What the run did that its sensitivity file does not hold (from the config and plan)."""

    layers: Mapping[str, str]  # network -> the layer its units are taken from
    norm: str
    simulated: bool
    rounds: int  # recording rounds of the closed loop
    figure1_round: int  # the round whose recordings give the brain's s~


def place(brain: Interval, networks: Mapping[str, Interval]) -> Placement:
    """Sort `networks` by how their intervals lie against `brain`'s."""
    more, less, overlapping, unmeasured = [], [], [], []
    for name, other in networks.items():
        if not (brain.finite and other.finite):
            unmeasured.append(name)
        elif other.high < brain.low:
            more.append(name)
        elif other.low > brain.high:
            less.append(name)
        else:
            overlapping.append(name)
    return Placement(tuple(more), tuple(less), tuple(overlapping), tuple(unmeasured))


def join_names(names: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    listed = list(names)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"


def placement_words(subject: str, placement: Placement) -> str:
    """One sentence, e.g. 'the brain is more sensitive than a and less sensitive than b.'"""
    clauses = [
        f"{verb} {join_names(names)}"
        for verb, names in [
            ("is more sensitive than", placement.more_than),
            ("is less sensitive than", placement.less_than),
            ("cannot be told apart from", placement.overlapping),
            ("has no interval to compare with", placement.unmeasured),
        ]
        if names
    ]
    if not clauses:
        return f"{subject}: no network to compare with."
    return f"{subject} {join_names(clauses)}."


def interval(sensitivity: xr.Dataset, population: str, eps: float) -> Interval:
    row = sensitivity.sel(population=population, eps=eps)
    return Interval(float(row["ci_low"]), float(row["ci_high"]))


def brain_populations(sensitivity: xr.Dataset) -> list[str]:
    """The brain's populations to place: the black-box estimate and, in silico, the white-box
    truth; without recordings of perturbed images the surrogate's prediction stands in."""
    present = set(sensitivity["population"].values.tolist())
    brain = [p for p in (BRAIN, BRAIN_WHITE_BOX) if p in present and BRAIN in present]
    return brain or [SURROGATE]


def placements(sensitivity: xr.Dataset) -> dict[float, list[str]]:
    """Per eps, one sentence per brain population on where it lies among the networks."""
    networks = network_populations(sensitivity)
    sentences = {}
    for eps in sensitivity["eps"].values:
        others = {name: interval(sensitivity, name, eps) for name in networks}
        sentences[float(eps)] = [
            placement_words(SUBJECTS[brain], place(interval(sensitivity, brain, eps), others))
            for brain in brain_populations(sensitivity)
        ]
        measured = {
            name.removeprefix(MEASURED_PREFIX): interval(sensitivity, name, eps)
            for name in measured_populations(sensitivity)
        }
        if measured and BRAIN in sensitivity["population"].values:
            sentences[float(eps)].append(
                placement_words(SUBJECTS[LIKE_FOR_LIKE], place(interval(sensitivity, BRAIN, eps), measured))
            )
    return sentences


def layer_words(layer: str) -> str:
    return "its penultimate layer" if layer == PENULTIMATE else f"layer <code>{escape(layer)}</code>"


def run_summary(sensitivity: xr.Dataset, facts: RunFacts) -> str:
    """What was run, as one HTML paragraph: sites, networks with their layers, images, eps, rounds."""
    brain = brain_populations(sensitivity)[0]
    sites = int(sensitivity["n_units"].sel(population=brain))
    images = int(sensitivity["n_images"].sel(population=brain))
    kind = "simulated IT sites (an in-silico monkey)" if facts.simulated else "recorded IT sites"
    networks = network_populations(sensitivity)
    described = [
        f"{escape(name)} ({int(sensitivity['n_units'].sel(population=name))} units of "
        f"{layer_words(facts.layers.get(name, PENULTIMATE))})"
        for name in networks
    ]
    eps = ", ".join(f"{float(e):g}" for e in sensitivity["eps"].values)
    if facts.rounds:
        rounds = f"{facts.rounds} recording rounds of the closed loop, the brain's s̃ from round {facts.figure1_round}"
    else:
        rounds = "no recordings of perturbed images yet (the surrogate's prediction stands in for the brain)"
    return (
        f"<p><strong>What was run:</strong> {sites} {kind}; {len(networks)} networks: "
        f"{', '.join(described)}; {images} clean images attacked; ε {eps} "
        f"({escape(facts.norm.upper())}, pixels in [0, 1]); {rounds}.</p>"
    )


def interval_table(sensitivity: xr.Dataset) -> str:
    """Figure 1's populations by eps, each cell the s~ estimate and its 95% interval."""
    populations = figure1_populations(sensitivity) + measured_populations(sensitivity)
    brain_is_surrogate = BRAIN not in populations
    eps_grid = [float(e) for e in sensitivity["eps"].values]
    header = "".join(f"<th>ε = {e:g}</th>" for e in eps_grid)
    rows = []
    for population in populations:
        cells = "".join(
            f"<td>{float(sensitivity['s_tilde'].sel(population=population, eps=e)):.3f} "
            f"({span.low:.3f} to {span.high:.3f})</td>"
            for e in eps_grid
            for span in [interval(sensitivity, population, e)]
        )
        rows.append(f"<tr><th>{escape(figure1_label(population, brain_is_surrogate))}</th>{cells}</tr>")
    return (
        "<div style='overflow-x:auto'><table class='headline-table' style='font-variant-numeric:tabular-nums'>"
        f"<thead><tr><th>s̃(ε), mean (95% interval)</th>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def transfer_table(transfer: xr.Dataset) -> str:
    """Black box / white box of every subject by round (rows) and eps (columns), each cell the
    ratio and its 95% interval (a real brain, which has no white box, has no row); then the
    brain calibrated by the networks' ratios, where given."""
    eps_grid = [float(e) for e in transfer["eps"].values]
    header = "".join(f"<th>ε = {e:g}</th>" for e in eps_grid)
    rows = []
    for subject in transfer["subject"].values:
        if transfer["ratio"].sel(subject=subject).isnull().all():
            continue
        for number in transfer["round"].values:
            cells = "".join(
                f"<td>{float(row['ratio']):.2f} ({float(row['ratio_low']):.2f} to {float(row['ratio_high']):.2f})</td>"
                for e in eps_grid
                for row in [transfer.sel(subject=subject, round=number, eps=e)]
            )
            rows.append(f"<tr><th>{escape(str(subject))}, round {int(number)}</th>{cells}</tr>")
    calibrated = ""
    if "calibrated_low" in transfer:
        spans = ", ".join(
            f"ε = {e:g}: {float(transfer['calibrated_low'].sel(eps=e)):.3f} to "
            f"{float(transfer['calibrated_high'].sel(eps=e)):.3f}"
            for e in eps_grid
        )
        calibrated = (
            f"<p>The brain's s̃ calibrated by the networks' last-round ratios (if the brain transfers as "
            f"they do): {spans}.</p>"
        )
    return (
        "<p><strong>How much of its truth each black-box bound recovers</strong> (black box / white box, "
        "95% paired interval):</p>"
        "<div style='overflow-x:auto'><table class='headline-table' style='font-variant-numeric:tabular-nums'>"
        f"<thead><tr><th>subject</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"{calibrated}"
    )


def headline(sensitivity: xr.Dataset, facts: RunFacts, transfer: xr.Dataset | None = None) -> str:
    """The landing page's first lines as an HTML fragment: what was run, the s~ table, and
    where the brain lies among the networks at each eps; in silico, the transfer ratios."""
    items = "".join(
        f"<li>ε = {eps:g}: {' '.join(escape(s[0].upper() + s[1:]) for s in sentences)}</li>"
        for eps, sentences in placements(sensitivity).items()
    )
    return (
        "<div class='headline'>\n"
        f"{run_summary(sensitivity, facts)}\n"
        f"{interval_table(sensitivity)}\n"
        "<p><strong>Where the brain lies among the networks</strong> (by the 95% intervals: "
        "overlapping intervals cannot be told apart):</p>\n"
        f"<ul class='placement'>{items}</ul>\n"
        f"{'' if transfer is None else transfer_table(transfer)}\n"
        "</div>\n"
    )
