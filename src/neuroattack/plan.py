"""What the workflow knows before any job runs: the config's cross-checks and the loop's rounds.

The Snakefile imports this module (with `config` and `download`), and every job, on a
cluster every SLURM job, parses the Snakefile again: so these three modules use the
standard library only, and building the DAG loads neither torch nor xarray
(tests/test_plan.py runs `snakemake --dry-run` under `python -X importtime` to keep it so).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neuroattack.config import (
    TRANSFER_KEYS,
    ConfigError,
    KnownStimuli,
    config_entry,
    depth_layers,
    depth_view,
    known_stimuli,
    layer_candidates,
    model_kind,
    validate_config,
    with_schema_types,
)
from neuroattack.remote import remote_file_name

# ------------------------------------------------------------------- the run's state


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


def downloaded(config: Mapping[str, Any], name: str) -> str:
    """Where downloaded file `name` (download_name's) is kept."""
    return str(Path(config.get("downloads", "downloads")) / name)


def name_pattern(names: Iterable[str]) -> str:
    """A wildcard constraint that matches exactly `names` (none: nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


@dataclasses.dataclass(frozen=True)
class Run:
    """What the rules know of a run before any job: its networks, its source of recordings,
    its attacked images and the loop's rounds."""

    networks: tuple[str, ...]
    trained: tuple[str, ...]  # trained by the workflow (a seed)
    imported: tuple[str, ...]  # a user's model: torchvision, timm or a factory (config.MODEL_KINDS)
    simulated: bool  # the in-silico brain records (else a lab's recordings)
    rounds: int
    refit: str
    ensemble: tuple[str, ...]  # empty: the single surrogate attacks every round
    warm_start: bool
    auto_surrogate: bool
    perturbed_tables: tuple[str, ...]  # a lab's recordings of each round's images
    attack_indices: tuple[str, ...]
    depth_views: tuple[str, ...] = ()  # networks seen at attack.layers: "<network>@<layer>"
    layer_views: tuple[str, ...] = ()  # surrogate.layer: auto: the candidate layers of surrogate networks
    auto_layer: bool = False

    @property
    def views(self) -> tuple[str, ...]:
        """Every depth view and candidate layer's view (each has a features file), once."""
        return tuple(dict.fromkeys(self.depth_views + self.layer_views))

    @property
    def downloaded(self) -> tuple[str, ...]:
        """The networks converted from a robustness-library checkpoint."""
        return tuple(name for name in self.networks if name not in self.trained + self.imported)

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


def run_plan(config: Mapping[str, Any]) -> Run:
    networks = config["networks"]
    simulated = config["recordings"]["source"] == "simulated"
    loop = config["loop"]
    return Run(
        networks=tuple(networks),
        trained=tuple(name for name, spec in networks.items() if "seed" in spec),
        imported=tuple(name for name, spec in networks.items() if model_kind(spec) is not None),
        simulated=simulated,
        rounds=int(loop["rounds"]),
        refit=str(loop["refit"]),
        ensemble=tuple(loop.get("ensemble") or []),
        warm_start=bool(loop.get("warm_start", False)),
        auto_surrogate=config["surrogate"]["network"] == "auto",
        perturbed_tables=() if simulated else tuple(perturbed_tables(config["recordings"])),
        attack_indices=tuple(f"{index:04d}" for index in range(config["attack"]["images"])),
        depth_views=views_of(depth_layers(config)),
        layer_views=views_of(layer_candidates(config)),
        auto_layer=config["surrogate"].get("layer") == "auto",
    )


def views_of(layers: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The views ("<network>@<layer>") of each network's listed layers."""
    return tuple(depth_view(name, layer) for name, listed in layers.items() for layer in listed)


# ------------------------------------------------------------------- seed streams

# Every random draw of a run belongs to one named stream; its seed is a hash of (master seed,
# stream, keys), so no two streams share a seed by accident (as an offset from one seed for one and
# an image index added to it for another once did). The brain's streams hash `brain.seed`, every other
# stream the config's `seed`; a trained network's own `seed` is the user's and stays as given.
SEED_STREAMS: dict[str, str] = {
    "network_init": "initial weights of a user's network that comes without a weights file",
    "crops": "which blocks of each photograph go to the stimuli and which to training (shared, so they never overlap)",
    "site_model_folds": "cross-validation folds and split halves of every site-model fit",
    "attacked_images": "which clean images are attacked",
    "units": "which units of every network are attacked",
    "attack_starts": "random starts of one round's attack on one image (keys: round, image)",
    "model_baseline": "random directions of one round's model-side baseline of one image (keys: round, image)",
    "white_box_starts": "random starts of the simulated brain's white-box attack",
    "random_directions": "one round's recorded random-direction images (key: round)",
    "finetune": "held-out images and batch order of one round's fine-tuning of the surrogate networks (key: round)",
    "preference_starts": "random starts of the category-preference attacks",
    "bootstrap": "every bootstrap interval of the sensitivity estimates",
    "screening": "the screening's splits and bootstraps",
    "brain_readout": "the simulated brain's readout weights (brain.seed)",
    "recording_noise": "Poisson noise of one recording session (brain.seed; key: round, 0 = clean)",
    "screening_session": "Poisson noise of the screening's own recording session (brain.seed)",
}
BRAIN_STREAMS = ("brain_readout", "recording_noise", "screening_session")


def stream_seed(master: int, stream: str, *keys: int) -> int:
    """The seed of `stream` (one of SEED_STREAMS) for `keys`: a 32-bit hash, which every
    generator of the library takes (scikit-learn's random_state included)."""
    if stream not in SEED_STREAMS:
        raise KeyError(f"no seed stream {stream!r}; the streams are {', '.join(SEED_STREAMS)}")
    text = ":".join([str(master), stream, *(str(key) for key in keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def config_seed(config: Mapping[str, Any], stream: str, *keys: int) -> int:
    """`stream`'s seed in a run of `config` (the brain's streams from brain.seed, where the config
    has a simulated brain; with real recordings they are never drawn)."""
    master = config.get("brain", {}).get("seed", config["seed"]) if stream in BRAIN_STREAMS else config["seed"]
    return stream_seed(int(master), stream, *keys)


def run_seeds(config: Mapping[str, Any]) -> dict[str, int]:
    """Every seed a run of `config` draws from, by stream and keys (what the test of distinct
    streams lists)."""
    rounds = range(1, int(config["loop"]["rounds"]) + 1)
    images = range(int(config["attack"]["images"]))
    keyed: dict[str, list[tuple[int, ...]]] = {
        "attack_starts": [(r, i) for r in rounds for i in images],
        "model_baseline": [(r, i) for r in rounds for i in images],
        "random_directions": [(r,) for r in rounds],
        "finetune": [(r,) for r in rounds if r > 1],
        "recording_noise": [(r,) for r in [0, *rounds]],
    }
    seeds = {}
    for stream in SEED_STREAMS:
        for keys in keyed.get(stream, [()]):
            seeds[" ".join([stream, *(str(key) for key in keys)])] = config_seed(config, stream, *keys)
    return seeds


# ------------------------------------------------------------------- the loop's rounds


def perturbed_tables(recordings: Mapping[str, Any]) -> list[str]:
    """recordings.perturbed as a list, one recordings table per round (a single path: round 1)."""
    tables = recordings.get("perturbed") or []
    return [tables] if isinstance(tables, str) else list(tables)


def first_unrecorded_round(tables: Sequence[str], rounds: int) -> int | None:
    """The first round (1-based) with no recordings table named, or None if every round has one."""
    return len(tables) + 1 if len(tables) < rounds else None


def missing_round_message(round_number: int, stimulus_csv: str, table_format: str) -> str:
    """What a lab does next when round `round_number` has no recordings yet."""
    return (
        f"round {round_number} of the loop has no recordings yet. Record the images listed in {stimulus_csv} "
        f"(the images are in the .zip beside it), write the recordings as a table ({table_format}), and add its "
        f"path as entry {round_number} of the config key recordings.perturbed (a list, one table per round); "
        "then run the same command again: the loop continues from there."
    )


def missing_table_error(round_number: int, path: str) -> str:
    return (
        f"recordings.perturbed entry {round_number} names {path}, which does not exist; "
        "give the path of that round's recordings table"
    )


# ------------------------------------------------------------------- downloads


def download_name(remote: Mapping[str, Any], folder: str) -> str:
    """Local name of a download, in `folder`: the entry's `name`, else its first URL's last path
    segment. Which mirror answers, and the mirrors after the first, never change it."""
    return f"{folder}/{remote_file_name(remote)}"


def weights_file(name: str, spec: Mapping[str, Any]) -> str | None:
    """Local name of a user's network's weights file (its suffix tells the format), if it has one."""
    if "weights" not in spec:
        return None
    suffix = Path(remote_file_name(spec["weights"])).suffix
    return f"weights/{name}{suffix if suffix == '.safetensors' else '.pt'}"


def download_entries(config: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(local name, config keys of its remote-file entry) of every file the config downloads,
    in config order; two entries may name one file (`config_problems` says so)."""
    keys: list[tuple[str, list[str]]] = []
    if config["stimuli"]["source"] == "brainscore":
        keys += [("brainscore", ["stimuli", "csv"]), ("brainscore", ["stimuli", "zip"])]
    if config["recordings"]["source"] == "brainscore":
        keys.append(("brainscore", ["recordings", "assembly"]))
    entries = [(download_name(config_entry(config, where), folder), where) for folder, where in keys]
    checkpoints = [name for name, spec in config["networks"].items() if "checkpoint" in spec]
    entries += [(f"checkpoints/{name}.ckpt", ["networks", name, "checkpoint"]) for name in checkpoints]
    weights = [(weights_file(name, spec), name) for name, spec in config["networks"].items()]
    return entries + [(local, ["networks", name, "weights"]) for local, name in weights if local is not None]


def downloads(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """{local name: config keys of its remote-file entry} of every file the config downloads."""
    return dict(download_entries(config))


def _download_problems(config: Mapping[str, Any]) -> list[str]:
    seen: dict[str, list[str]] = {}
    problems = []
    for local, keys in download_entries(config):
        if local in seen:
            problems.append(
                f"{'.'.join(keys)} and {'.'.join(seen[local])} would both be downloaded to {local}; "
                "give one of them a different 'name'"
            )
        seen.setdefault(local, keys)
    return problems


# ------------------------------------------------------------------- cross-checks

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
        *_download_problems(config),
        *_attack_problems(config),
    ]


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
    problems = [
        f"key {needed!r} is required because recordings.source is 'simulated'"
        for needed in ("brain", "architecture", "training", "training_data")
        if needed not in config
    ]
    if config["stimuli"]["source"] != "embedded":
        problems.append(
            "recordings.source 'simulated' needs stimuli.source 'embedded' (the brain is calibrated on them)"
        )
    if "time_window_ms" in config["recordings"]:
        problems.append("recordings.time_window_ms selects a time bin of real recordings; the simulated brain has none")
    return problems


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
    if config["recordings"]["source"] == "simulated":
        return []
    tables, rounds = perturbed_tables(config["recordings"]), config["loop"]["rounds"]
    problems = []
    if len(tables) > rounds:
        problems.append(
            f"recordings.perturbed lists {len(tables)} tables but loop.rounds = {rounds}; "
            "give one table per round, or raise loop.rounds"
        )
    problems += [
        missing_table_error(number, table) for number, table in enumerate(tables, start=1) if not Path(table).is_file()
    ]
    return problems
