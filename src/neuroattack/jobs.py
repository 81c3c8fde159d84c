"""What a rule gives its jobs besides inputs: the params that decide its results (and so its
reruns) and the resources it asks a scheduler for. The standard library only: building the
DAG imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from neuroattack.config import (
    BRAIN,
    DEFAULT_CHECKPOINT_ARCHITECTURE,
    DEFAULT_NORM,
    PENULTIMATE,
    TIME_WINDOW_MS,
    network_entry,
    own_layer,
    science,
    split_view,
)

Resources = dict[str, int | Callable[[Any, int], int]]


def gpu_job(mem_mb: int, runtime: int, chunk_rows: int | None = None) -> Resources:
    """Resources of an attacking job, which uses a GPU when one is there (else the CPU). One GPU,
    CPUs to feed it, memory (MB) and runtime (minutes) that grow with each retry, and the rows
    per batch (`chunk_rows`, which sets speed and memory only: a resource, so that changing it,
    in the config or with a profile's set-resources, never reruns a finished job; halved on
    each retry)."""
    resources: Resources = {"gpu": 1, "cpus_per_gpu": 2, **cpu_job(mem_mb, runtime)}
    return resources if chunk_rows is None else {**resources, "chunk_rows": halved_on_retry(chunk_rows)}


def halved_on_retry(chunk_rows: int) -> Callable[[Any, int], int]:
    """Rows per batch of an attempt: halved on each retry, so that a job that ran out of (GPU)
    memory runs again in smaller batches (the same numbers: batches change no result)."""
    return lambda wildcards, attempt: max(1, chunk_rows // 2 ** (attempt - 1))


def cpu_job(mem_mb: int, runtime: int) -> Resources:
    """Resources of a CPU rule: memory (MB) and runtime (minutes), growing with each retry."""
    return {
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }


RECORDED_GRADIENT = {"weight": 0.0, "eps": 1.0, "ridge": 100.0}  # loop.recorded_gradient's defaults: off


def recorded_gradient_settings(config: Mapping[str, Any]) -> dict[str, float] | None:
    """loop.recorded_gradient with its defaults, or None where it is off (weight 0): a param
    of the rounds' attacks only where it changes them."""
    settings = {**RECORDED_GRADIENT, **config["loop"].get("recorded_gradient", {})}
    return settings if settings["weight"] else None


def round_part_threads(images: int, parts: int, cores: int | None) -> int:
    """Threads of one job of a round's attack (its images run side by side, one thread each):
    at most its share of the `cores` the run was given (None: unknown, as on a cluster), so that
    the round's jobs run side by side and each starts on the first free core. A job that asks
    for every core waits until every other job has ended, while jobs of one thread keep taking
    whichever core frees first."""
    if cores is None:
        return images
    return max(1, min(images, cores // parts))


# Scheduling priorities: the chain that every round waits on (the brain, the site models,
# the attacks, each round's recordings) runs first, so the screening, the white box and the
# figures fill the cores it leaves idle.
CHAIN = 1
# The stimulus set and the training data: seconds of work that the trainings, or every job
# after them, wait on.
FIRST = CHAIN + 3


def training_priority(config: Mapping[str, Any], name: str) -> int:
    """Trainings come before the chain; the adversarial ones (several times longer) first."""
    return CHAIN + 1 + (1 if network_spec(config, name)["eps"] > 0 else 0)


def network_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Training settings of a trained network of the config, or (BRAIN) of the brain's network,
    which names its own widths and blocks (the others share `architecture`)."""
    spec = network_entry(config, name)
    architecture = spec if name == BRAIN else config["architecture"]
    return science(
        {"eps": spec["eps"], "seed": spec["seed"], "widths": architecture["widths"], "blocks": architecture["blocks"]}
    )


# How a network measured as the brain beside real recordings is read out, where the config has
# no `brain` section: the default in-silico monkey's rectifier. Its sites, noise and repetitions
# come from the recordings instead (brain.simulated.with_matched_noise).
MEASURED_READOUT = {"mean_count": 3.0, "baseline_count": 0.5, "softplus_beta": 2.0, "drive_offset": -0.5}


def brain_settings(config: Mapping[str, Any], subject: str = BRAIN) -> dict[str, Any]:
    """Rule build_brain's settings: the brain section without what other rules handle, plus the
    layer its sites read out where it is not the default (so writing the default out, or the
    key's arrival, reruns no brain); for a network measured as the brain, that network's layer,
    or the view's ("<network>@<layer>"). Beside real recordings, the rectifier of the `brain`
    section where there is one (else MEASURED_READOUT): the recorded sites set the rest."""
    if config["recordings"]["source"] == "simulated":
        settings = science(config["brain"], drop=["network", "repetitions", "seed"])
    else:
        readout = {**MEASURED_READOUT, **config.get("brain", {})}
        settings = science({key: readout[key] for key in MEASURED_READOUT})
    network, view_layer = split_view(subject)
    layer = view_layer or own_layer(config, network)
    return settings if layer == PENULTIMATE else science({**settings, "layer": layer})


def checkpoint_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What the conversion of a downloaded network depends on: its training eps and norm and its
    architecture, defaults filled in (so writing a default out triggers nothing)."""
    spec = network_entry(config, name)
    return science(
        {
            "eps": spec["eps"],
            "norm": spec.get("norm", DEFAULT_NORM),
            "architecture": spec.get("architecture", DEFAULT_CHECKPOINT_ARCHITECTURE),
        }
    )


def recordings_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The import rule's params: the recordings section without what it does not read; the
    default time window is left out, so writing it in the config triggers no rerun."""
    settings = science(config["recordings"], drop=["assembly", "path", "perturbed", "sites"])
    if settings.get("time_window_ms") == list(TIME_WINDOW_MS):
        del settings["time_window_ms"]
    return settings


def user_model_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What the import of a user's network depends on: its entry without the weights' mirrors
    (the checksum, which identifies the file, stays) and without its layer (applied where
    features are made), so editing either reruns no import."""
    spec = dict(network_entry(config, name))
    spec.pop("layer", None)
    weights = spec.pop("weights", None)
    if weights is not None and "sha256" in weights:
        spec["weights_sha256"] = weights["sha256"]
    return science(spec)


def network_layer(config: Mapping[str, Any], name: str) -> str:
    """The layer a network is seen at (`networks.<name>.layer`; default the penultimate layer),
    or a depth view's (`<network>@<layer>`, from attack.layers)."""
    network, layer = split_view(name)
    return layer if layer is not None else own_layer(config, network)
