"""The run's plan: what the rules know of a run before any job runs (its networks, its source
of recordings, its attacked images and the loop's rounds).

Every job, on a cluster every SLURM job, parses the Snakefile again; so this module, as every
module the Snakefile and its rules import, uses the standard library only, and building the
DAG loads neither torch nor xarray (tests/test_plan.py runs `snakemake --dry-run` under
`python -X importtime` to keep it so).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from neuroattack.config import built_networks, depth_layers, depth_view, layer_candidates, model_kind
from neuroattack.recorded_rounds import first_unrecorded_round, perturbed_tables


@dataclasses.dataclass(frozen=True)
class Run:
    """What the rules know of a run before any job: its networks, its source of recordings,
    its attacked images and the loop's rounds."""

    networks: tuple[str, ...]
    # How each network the run builds is made, the simulated brain's (config.BRAIN) included:
    trained: tuple[str, ...]  # trained by the workflow (a seed)
    imported: tuple[str, ...]  # a user's model: torchvision, timm or a factory (config.MODEL_KINDS)
    downloaded: tuple[str, ...]  # converted from a robustness-library checkpoint
    simulated: bool  # the in-silico brain records (else a lab's recordings)
    rounds: int
    refit: str
    ensemble: tuple[str, ...]  # empty: the single surrogate attacks every round
    warm_start: bool
    auto_surrogate: bool
    perturbed_tables: tuple[str, ...]  # a lab's recordings of each round's images
    attack_indices: tuple[str, ...]
    attack_parts: tuple[tuple[str, ...], ...]  # a round's attack jobs, each a group of images (loop.images_per_job)
    depth_views: tuple[str, ...] = ()  # networks seen at attack.layers: "<network>@<layer>"
    layer_views: tuple[str, ...] = ()  # surrogate.layer: auto: the candidate layers of surrogate networks
    auto_layer: bool = False
    subjects: tuple[str, ...] = ()  # measured as if each were the brain: like_for_like's networks (and views)
    matched_noise: bool = False  # the subjects' noise matched to the brain's recorded sites (else the brain's model)

    @property
    def views(self) -> tuple[str, ...]:
        """Every depth view and candidate layer's view (each has a features file), once."""
        return tuple(dict.fromkeys(self.depth_views + self.layer_views))

    @property
    def recorded_rounds(self) -> int:
        """In silico every round is recorded; with real recordings, the rounds with a table."""
        return self.rounds if self.simulated else len(self.perturbed_tables)

    @property
    def next_round(self) -> int | None:
        """With real recordings, the first round without a table (its images go to the rig)."""
        return None if self.simulated else first_unrecorded_round(self.perturbed_tables, self.rounds)

    @property
    def figure1_round(self) -> int:
        """The round whose black-box estimate Figure 1 draws: the last recorded (else round 1's attacks)."""
        return max(self.recorded_rounds, 1)


def image_groups(indices: tuple[str, ...], per_job: int | None) -> tuple[tuple[str, ...], ...]:
    """The attacked images in consecutive groups of `per_job` (None: one group of all)."""
    size = len(indices) if per_job is None else per_job
    return tuple(indices[start : start + size] for start in range(0, len(indices), max(size, 1)))


def run_plan(config: Mapping[str, Any]) -> Run:
    networks = config["networks"]
    built = built_networks(config)
    simulated = config["recordings"]["source"] == "simulated"
    indices = tuple(f"{index:04d}" for index in range(config["attack"]["images"]))
    loop = config["loop"]
    return Run(
        networks=tuple(networks),
        trained=tuple(name for name, spec in built.items() if "seed" in spec),
        imported=tuple(name for name, spec in built.items() if model_kind(spec) is not None),
        downloaded=tuple(name for name, spec in built.items() if "checkpoint" in spec),
        simulated=simulated,
        rounds=int(loop["rounds"]),
        refit=str(loop["refit"]),
        ensemble=tuple(loop.get("ensemble") or []),
        warm_start=bool(loop.get("warm_start", False)),
        auto_surrogate=config["surrogate"]["network"] == "auto",
        perturbed_tables=() if simulated else tuple(perturbed_tables(config["recordings"])),
        attack_indices=indices,
        attack_parts=image_groups(indices, config["loop"].get("images_per_job")),
        depth_views=views_of(depth_layers(config)),
        layer_views=views_of(layer_candidates(config)),
        auto_layer=config["surrogate"].get("layer") == "auto",
        subjects=like_for_like_subjects(config),
        matched_noise=not simulated or config.get("like_for_like", {}).get("noise") == "matched",
    )


SUBJECTS_FOLDER = "subjects"


def like_for_like_networks(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The networks measured through the brain's black-box pipeline (`like_for_like.networks`:
    a list, or `all` for every network of the `networks` section)."""
    chosen = config.get("like_for_like", {}).get("networks") or []
    return tuple(config["networks"]) if chosen == "all" else tuple(chosen)


def like_for_like_subjects(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Everything measured as if it were the brain: each like_for_like network at its own layer
    and, with like_for_like.layers, at every layer attack.layers adds for it ("<network>@<layer>",
    Figure 7's like-for-like panels)."""
    networks = like_for_like_networks(config)
    if not config.get("like_for_like", {}).get("layers"):
        return networks
    added = depth_layers(config)
    return (*networks, *(depth_view(name, layer) for name in networks for layer in added.get(name, [])))


def subject_folder(network: str | None) -> str:
    """The {subject} wildcard's value: "" for the brain, "subjects/<network>/" for a network
    measured as if it were the brain."""
    return "" if network is None else f"{SUBJECTS_FOLDER}/{network}/"


def subject_network(folder: str) -> str | None:
    """The network a {subject} wildcard's value measures (None: the brain)."""
    return folder.removeprefix(f"{SUBJECTS_FOLDER}/").removesuffix("/") or None


def subject_pattern(networks: Iterable[str], brain: bool = True) -> str:
    """The {subject} wildcard's constraint: the brain's "" (unless `brain` is false) or one of
    `networks`' folders."""
    folders = f"{SUBJECTS_FOLDER}/(?:{name_pattern(networks)})/"
    return f"(?:{folders})?" if brain else folders


def views_of(layers: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The views ("<network>@<layer>") of each network's listed layers."""
    return tuple(depth_view(name, layer) for name, listed in layers.items() for layer in listed)


def name_pattern(names: Iterable[str]) -> str:
    """A wildcard constraint that matches exactly `names` (none: nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"
