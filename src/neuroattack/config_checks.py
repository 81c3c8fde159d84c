"""The config's checks at start: the schema, then the cross-checks the schema cannot make
(keys that depend on each other, paths that must exist, numbers the stimulus set bounds),
each problem one sentence that names its key and what to do.

Standard library only (and jsonschema): the Snakefile checks the config with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuroattack.config import (
    BRAIN,
    PENULTIMATE,
    TRANSFER_KEYS,
    ConfigError,
    KnownStimuli,
    depth_layers,
    known_stimuli,
    layer_candidates,
    own_layer,
    validate_config,
    with_schema_types,
)
from neuroattack.downloaded_files import download_name, download_problems, downloaded
from neuroattack.jobs import recorded_gradient_settings
from neuroattack.plan import like_for_like_networks
from neuroattack.recorded_rounds import missing_table_error, perturbed_tables


def checked_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with numbers as the schema types them (so that `1` and `1.0` give the same
    params: no rerun), once it passes the schema and the cross-checks; else ConfigError with
    one line per problem (the key, its value, what is allowed)."""
    validate_config(config, schema)
    typed: dict[str, Any] = with_schema_types(config, schema)
    stimuli = typed["stimuli"]
    csv = downloaded(typed, download_name(stimuli["csv"], "brainscore")) if stimuli["source"] == "brainscore" else None
    problems = config_problems(typed, known_stimuli(stimuli, csv))
    if problems:
        raise ConfigError("\n".join(f"config: {problem}" for problem in problems))
    return typed


UNKNOWN_STIMULI = KnownStimuli(None, None, "")


def config_problems(config: Mapping[str, Any], stimuli: KnownStimuli = UNKNOWN_STIMULI) -> list[str]:
    """Every problem of a schema-valid `config` that the schema cannot see (keys that depend on
    each other, paths that must exist, numbers the stimulus set bounds), one sentence each
    naming the key and what to do; empty when there is none. `stimuli`: the stimulus set's size
    and categories where known before any job runs (`config.known_stimuli`)."""
    return [
        *_network_problems(config),
        *_source_problems(config),
        *_image_count_problems(config, stimuli),
        *_round_problems(config),
        *download_problems(config),
        *_attack_problems(config),
        *_like_for_like_problems(config),
    ]


def _like_for_like_problems(config: Mapping[str, Any]) -> list[str]:
    """A network measured as the brain needs at least one loop network other than itself to fit
    its site models from (and, with like_for_like.layers, layers to be measured at)."""
    chosen = like_for_like_networks(config)
    if not chosen:
        return []
    networks = list(config["networks"])
    unknown = [name for name in chosen if name not in networks]
    if unknown:
        return [
            f"like_for_like.networks names {unknown}, which are not networks ({', '.join(networks)}); "
            "list networks of the config by name, or write all"
        ]
    if config.get("like_for_like", {}).get("layers") and not any(depth_layers(config).get(name) for name in chosen):
        return [
            "like_for_like.layers: true measures the networks as the brain at the layers attack.layers adds, "
            f"but attack.layers adds none for {list(chosen)}; "
            "list layers in attack.layers or set like_for_like.layers: false"
        ]
    if config["loop"].get("ensemble"):
        return []
    surrogate = config["surrogate"]["network"]
    if surrogate == "auto":
        return [
            "like_for_like.networks with surrogate.network: auto needs loop.ensemble (the chosen surrogate may be "
            "the measured network itself); list the loop's networks in loop.ensemble or name surrogate.network"
        ]
    if surrogate in chosen:
        return [
            f"like_for_like.networks lists the surrogate {surrogate!r}, which would attack itself; list loop.ensemble "
            f"(each measured network is left out of its own) or drop {surrogate!r} from like_for_like.networks"
        ]
    return []


def _attack_problems(config: Mapping[str, Any]) -> list[str]:
    attack = config["attack"]
    transfer = [key for key in TRANSFER_KEYS if attack.get(key, 0)]
    if transfer and attack.get("schedule", "geometric") == "paper":
        named = " and ".join(f"attack.{key}" for key in transfer)
        return [f"{named} need attack.schedule: geometric; set them to 0 or change the schedule"]
    return []


def _network_problems(config: Mapping[str, Any]) -> list[str]:
    networks = list(config["networks"])
    ensemble = list(config["loop"].get("ensemble") or [])
    trained = [name for name, spec in config["networks"].items() if "seed" in spec]
    problems = []
    if set(ensemble) - set(networks) or len(set(ensemble)) != len(ensemble):
        problems.append(
            f"loop.ensemble = {ensemble} names networks more than once or outside networks ({', '.join(networks)}); "
            "list each ensemble member once, by its name under networks (or leave it empty for the single surrogate)"
        )
    surrogate = config["surrogate"]["network"]
    if surrogate != "auto" and surrogate not in networks:
        problems.append(
            f"surrogate.network = {surrogate!r} is not one of networks ({', '.join(networks)}); "
            "name a network of the config, or auto (chosen by screening.criterion)"
        )
    for section in ("attack", "surrogate"):
        layers = config[section].get("layers") or []
        unknown = sorted(set(layers) - set(networks)) if isinstance(layers, Mapping) else []
        if unknown:
            problems.append(
                f"{section}.layers names {unknown}, which are not networks ({', '.join(networks)}); key the lists "
                "by network name, or give one list for every network"
            )
    if config["surrogate"].get("layer") == "auto" and not any(layer_candidates(config).values()):
        problems.append(
            "surrogate.layer is auto but surrogate.layers names no layer besides the surrogate's own; list the "
            "candidate layers in surrogate.layers (e.g. [stages.1, stages.2]), or leave surrogate.layer out"
        )
    for needed in ("architecture", "training", "training_data"):
        if trained and needed not in config:
            problems.append(f"key {needed!r} is required because networks {trained} are trained (they have a seed)")
    return problems


def _source_problems(config: Mapping[str, Any]) -> list[str]:
    if config["recordings"]["source"] != "simulated":
        return []
    if "brain" not in config:
        return ["key 'brain' is required because recordings.source is 'simulated'"]
    trained = "seed" in config["brain"]["network"]  # else imported or converted: no training
    problems = [
        f"key {needed!r} is required because recordings.source is 'simulated' and brain.network is trained "
        "(it has a seed)"
        for needed in ("training", "training_data")
        if trained and needed not in config
    ]
    problems += _brain_layer_problems(config)
    if config["stimuli"]["source"] != "embedded":
        problems.append(
            "recordings.source 'simulated' needs stimuli.source 'embedded' (the brain is calibrated on them)"
        )
    if "time_window_ms" in config["recordings"]:
        problems.append("recordings.time_window_ms selects a time bin of real recordings; the simulated brain has none")
    return problems


# The top-level modules of the workflow's small ResNets (networks.models.SmallResNet).
SMALL_RESNET_MODULES = ("normalize", "stem", "stages", "pool", "fc")


def _brain_layer_problems(config: Mapping[str, Any]) -> list[str]:
    """A layer the brain's small ResNet cannot have (its widths and blocks tell its stages and
    blocks); another model's layers are known once it is built (build_brain lists them)."""
    entry, layer = config["brain"]["network"], own_layer(config, BRAIN)
    if "seed" not in entry or layer == PENULTIMATE:
        return []
    problem = small_resnet_layer_problem(layer, entry["widths"], entry["blocks"])
    return [] if problem is None else [f"brain.network.layer = {layer!r}: {problem}"]


def small_resnet_layer_problem(layer: str, widths: list[int], blocks: list[int]) -> str | None:
    """Why a small ResNet of `widths` and `blocks` has no module `layer` (checked down to its
    blocks), in words with what to name instead; None where it may have it."""
    top, *rest = layer.split(".")
    if top not in SMALL_RESNET_MODULES:
        return f"a small ResNet has no such module; name one under {', '.join(SMALL_RESNET_MODULES)}, or penultimate"
    if top != "stages" or not rest:
        return None
    if not rest[0].isdigit() or int(rest[0]) >= len(widths):
        return f"brain.network.widths gives {len(widths)} stage(s): name stages.0 to stages.{len(widths) - 1}"
    stage = int(rest[0])
    if len(rest) > 1 and (not rest[1].isdigit() or int(rest[1]) >= blocks[stage]):
        last = f"stages.{stage}.{blocks[stage] - 1}"
        return f"brain.network.blocks gives stage {stage} {blocks[stage]} block(s): name stages.{stage}.0 to {last}"
    return None


def _image_count_problems(config: Mapping[str, Any], stimuli: KnownStimuli) -> list[str]:
    attacked, screened = config["attack"]["images"], config["screening"]["images"]
    problems = []
    if stimuli.count is not None and attacked > stimuli.count:
        problems.append(
            f"attack.images = {attacked}, but the stimulus set has only {stimuli.count} images ({stimuli.origin}); "
            f"lower attack.images to at most {stimuli.count}"
        )
    targeted = config["preference"]["categories"]
    if stimuli.categories is not None and targeted >= stimuli.categories:
        problems.append(
            f"preference.categories = {targeted}, but the stimulus set has {stimuli.categories} categories "
            f"({stimuli.origin}); use 1 to {stimuli.categories - 1} (one category stays out as the preferred one)"
        )
    if screened > attacked:
        problems.append(
            f"screening.images = {screened} is more than attack.images = {attacked}; lower it to at most {attacked}"
        )
    simulated = config["recordings"]["source"] == "simulated"
    if config["surrogate"]["network"] == "auto" and config["screening"]["criterion"] == "transfer" and not simulated:
        problems.append(
            "screening.criterion = transfer needs the brain's responses to perturbed images, which real recordings "
            "give only after a rig session; choose by predictivity or cka, or name the surrogate in surrogate.network"
        )
    return problems


def _round_problems(config: Mapping[str, Any]) -> list[str]:
    gradient = recorded_gradient_settings(config)
    eps_grid = [float(eps) for eps in config["attack"]["eps"]]
    problems = []
    if gradient and not any(abs(float(gradient["eps"]) - eps) <= 1e-6 * eps for eps in eps_grid):
        problems.append(
            f"loop.recorded_gradient.eps = {gradient['eps']} is not one of attack.eps {eps_grid}: "
            "the rounds record changes at those budgets only; pick one of them"
        )
    if config["recordings"]["source"] == "simulated":
        return problems
    tables, rounds = perturbed_tables(config["recordings"]), config["loop"]["rounds"]
    if len(tables) > rounds:
        problems.append(
            f"recordings.perturbed lists {len(tables)} tables but loop.rounds = {rounds}; "
            "give one table per round, or raise loop.rounds"
        )
    problems += [
        missing_table_error(number, table) for number, table in enumerate(tables, start=1) if not Path(table).is_file()
    ]
    return problems
