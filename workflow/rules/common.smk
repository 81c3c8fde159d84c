# Config checks, the run's state (networks, rounds), paths, resources and input functions
# shared by the rule files. It imports the standard-library modules neuroattack.config,
# .download and .plan only, since every job parses the Snakefile again: no torch here.
import os
import re

import yaml

from neuroattack.artifacts import artifact_path
from neuroattack.config import (
    DEFAULT_CHECKPOINT_ARCHITECTURE,
    DEFAULT_NORM,
    TIME_WINDOW_MS,
    ConfigError,
    config_entry,
    known_stimulus_count,
    science,
    validate_config,
    with_schema_types,
)
from neuroattack.download import remote_checksum
from neuroattack.plan import (
    config_problems,
    download_name,
    downloads,
    first_unrecorded_round,
    missing_round_message,
    perturbed_tables,
    config_seed,
)

with open(workflow.source_path("../schemas/config.schema.yaml")) as schema_file:
    SCHEMA = yaml.safe_load(schema_file)
# One line per offending key (its value, what is allowed), not the whole schema.
validate_config(config, SCHEMA)
# Numbers as the schema types them, so that `1` and `1.0` give the same params (no rerun).
config.update(with_schema_types(config, SCHEMA))


def downloaded(name):
    return os.path.join(config.get("downloads", "downloads"), name)


def known_stimuli():
    """The stimulus set's size where it is known before any job runs (embedded stimuli, an
    image folder, a Brain-Score CSV already downloaded), and where that number comes from."""
    stimuli = config["stimuli"]
    csv = downloaded(download_name(stimuli["csv"], "brainscore")) if stimuli["source"] == "brainscore" else None
    return known_stimulus_count(stimuli, csv)


PROBLEMS = config_problems(config, known_stimuli())
if PROBLEMS:
    raise ConfigError("\n".join(f"config: {problem}" for problem in PROBLEMS))


NETWORKS = list(config["networks"])
TRAINED = [name for name, spec in config["networks"].items() if "checkpoint" not in spec]
DOWNLOADED = [name for name, spec in config["networks"].items() if "checkpoint" in spec]
SIMULATED = config["recordings"]["source"] == "simulated"
LOOP = config["loop"]
ROUNDS = LOOP["rounds"]
ENSEMBLE = list(LOOP.get("ensemble") or [])  # empty: the single surrogate
WARM_START = bool(LOOP.get("warm_start", False))
AUTO_SURROGATE = config["surrogate"]["network"] == "auto"
PERTURBED_TABLES = [] if SIMULATED else perturbed_tables(config["recordings"])
# In silico the brain records every round; with real recordings the loop runs up to the
# first round without a table and exports that round's images for the rig.
RECORDED_ROUNDS = ROUNDS if SIMULATED else len(PERTURBED_TABLES)
NEXT_ROUND = None if SIMULATED else first_unrecorded_round(PERTURBED_TABLES, ROUNDS)
HAS_RESPONSES = RECORDED_ROUNDS > 0
# Figure 1's brain estimate comes from the last recorded round (round 1's attacks when none is).
FIGURE1_ROUND = max(RECORDED_ROUNDS, 1)

ATTACK_INDICES = [f"{i:04d}" for i in range(config["attack"]["images"])]
NETWORK_PATTERN = "|".join(re.escape(name) for name in NETWORKS)
TRAINED_PATTERN = "|".join(re.escape(name) for name in TRAINED + (["brain"] if SIMULATED else []))
DOWNLOADED_PATTERN = "|".join(re.escape(name) for name in DOWNLOADED) or "(?!)"


wildcard_constraints:
    index=r"\d{4}",


def seed(stream, *keys):
    """The seed of one named stream of random draws (neuroattack.plan.SEED_STREAMS)."""
    return config_seed(config, stream, *keys)


def artifact(name, /, **wildcards):
    """Where artifact `name` (neuroattack.artifacts.PATHS) of this run lives."""
    return artifact_path(config["results"], name, **wildcards)


def log_file(name):
    return artifact("log", name=name)


def download_checksum(wildcards):
    """What identifies a downloaded file, and so the only download setting that reruns it:
    its checksum ({algorithm: digest}; null = recorded at first download). URLs are not in it."""
    algorithm, digest = remote_checksum(config_entry(config, DOWNLOADS[wildcards.file]))
    return science({algorithm: digest})


def checkpoint_settings(name):
    """What the conversion of a downloaded network depends on: its training eps and norm and its
    architecture, defaults filled in (so writing a default out triggers nothing)."""
    spec = config["networks"][name]
    return science(
        {
            "eps": spec["eps"],
            "norm": spec.get("norm", DEFAULT_NORM),
            "architecture": spec.get("architecture", DEFAULT_CHECKPOINT_ARCHITECTURE),
        }
    )


DOWNLOADS = downloads(config)
DOWNLOAD_PATTERN = "|".join(re.escape(name) for name in DOWNLOADS) or "(?!)"


# --- inputs that depend on the configured sources -------------------------------------


def stimuli_inputs(wildcards):
    stimuli = config["stimuli"]
    if stimuli["source"] == "brainscore":
        return {
            "csv": downloaded(download_name(stimuli["csv"], "brainscore")),
            "zip": downloaded(download_name(stimuli["zip"], "brainscore")),
        }
    if stimuli["source"] == "folder":
        return {"folder": stimuli["path"]}
    return {}


def training_inputs(wildcards):
    data = config.get("training_data", {})
    return {"folder": data["path"]} if data.get("source") == "folder" else {}


def recordings_settings():
    """The import rule's params: the recordings section without what it does not read; the
    default time window is left out, so writing it in the config triggers no rerun."""
    settings = science(config["recordings"], drop=["assembly", "path", "perturbed", "sites"])
    if settings.get("time_window_ms") == list(TIME_WINDOW_MS):
        del settings["time_window_ms"]
    return settings


def recordings_inputs(wildcards):
    recordings = config["recordings"]
    if recordings["source"] == "brainscore":
        return {"assembly": downloaded(download_name(recordings["assembly"], "brainscore"))}
    return {"table": recordings["path"]}


def gpu_job(mem_mb, runtime, chunk_rows=None):
    """Resources of an attacking job, which uses a GPU when one is there (else the CPU). One GPU,
    CPUs to feed it, memory (MB) and runtime (minutes) that grow with each retry, and the rows
    per batch (`chunk_rows`, which sets speed and memory only: a resource, so that changing it,
    in the config or with a profile's set-resources, never reruns a finished job)."""
    resources = {
        "gpu": 1,
        "cpus_per_gpu": 2,
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }
    return resources if chunk_rows is None else {**resources, "chunk_rows": chunk_rows}


def cpu_job(mem_mb, runtime):
    """Resources of a CPU rule, growing with each retry."""
    return {
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }


def network_spec(name):
    """Training settings of a trained network of the config, or of the brain's network."""
    if name == "brain":
        spec = config["brain"]["network"]
        return science({"eps": spec["eps"], "seed": spec["seed"], "widths": spec["widths"], "blocks": spec["blocks"]})
    spec = config["networks"][name]
    arch = config["architecture"]
    return science({"eps": spec["eps"], "seed": spec["seed"], "widths": arch["widths"], "blocks": arch["blocks"]})


def network_weights(names=None):
    return {name: artifact("network", network=name) for name in (names or NETWORKS)}


def network_features(names=None):
    return {name: artifact("features", network=name) for name in (names or NETWORKS)}


def figure_outputs(number):
    """Figure `number`'s picture (png, pdf) and the numbers it plots (.nc)."""
    return multiext(artifact("figure", number=number), ".png", ".pdf", ".nc")


def attack_files():
    return [artifact("attack", index=index) for index in ATTACK_INDICES]


def surrogate_weights():
    """The surrogate's weights: the named network's, or (surrogate.network: auto) a copy of the chosen one's."""
    if AUTO_SURROGATE:
        return artifact("surrogate_weights")
    return artifact("network", network=config["surrogate"]["network"])


def surrogate_features():
    """The surrogate's features, as surrogate_weights."""
    if AUTO_SURROGATE:
        return artifact("surrogate_features")
    return artifact("features", network=config["surrogate"]["network"])


def screening_inputs(wildcards):
    inputs = {
        "stimuli": artifact("stimuli"),
        "recordings": artifact("clean_recordings"),
        **{f"weights_{name}": path for name, path in network_weights().items()},
        **{f"features_{name}": path for name, path in network_features().items()},
    }
    if SIMULATED:
        inputs["brain"] = artifact("brain")
    return inputs


def final_outputs():
    """Rule all's inputs: figures 1-5, the report's s~ table and, with rounds recorded, figure 6;
    in silico the brain's white box, else the screening's and the next round's rig stimulus sets."""
    outputs = [figure_outputs(number) for number in (1, 2, 3, 4, 5)]
    outputs.append(artifact("sensitivity_table"))
    if SIMULATED:
        outputs.append(artifact("white_box"))
    else:
        outputs.append(multiext(artifact("screening_rig_stimuli"), ".csv", ".zip"))
    if RECORDED_ROUNDS:
        outputs.append(figure_outputs(6))
    if NEXT_ROUND is not None:
        outputs.append(rig_stimuli(NEXT_ROUND))
    return outputs


def coverage_brain_inputs(wildcards):
    """Recordings of the perturbed images (when there are any) and, in silico, the white box."""
    return {
        **({"responses": artifact("round_responses", round=FIGURE1_ROUND)} if HAS_RESPONSES else {}),
        **({"white_box": artifact("white_box")} if SIMULATED else {}),
    }


# --- the closed loop over recording rounds (workflow/rules/loop.smk) -------------------


wildcard_constraints:
    round=r"[1-9]\d*",


def rig_stimuli(number):
    return multiext(artifact("round_rig_stimuli", round=number), ".csv", ".zip")


def round_site_models(number):
    """The site models that attack round `number` (one file per ensemble member): round 1's
    are fitted on the clean recordings."""
    number = int(number)
    if ENSEMBLE:
        fitted = 1 if LOOP["refit"] == "none" else number
        return [artifact("round_member_site_models", round=fitted, network=name) for name in ENSEMBLE]
    if number == 1 or LOOP["refit"] == "none":
        return [artifact("site_models")]
    return [artifact("round_site_models", round=number)]


def round_surrogates():
    """The networks whose site models attack every round, in round_site_models' order."""
    return list(network_weights(ENSEMBLE).values()) if ENSEMBLE else [surrogate_weights()]


def round_attack_file(number, index):
    """Round `number`'s attack on clean image `index`: round 1's are attack_image's, unless an
    ensemble attacks the sites (then rule attack_round makes every round's)."""
    number = int(number)
    if number == 1 and not ENSEMBLE:
        return artifact("attack", index=index)
    return artifact("round_attack", round=number, index=index)


def round_attack_inputs(wildcards):
    """What round `wildcards.round`'s attack on one image reads; with loop.warm_start, also
    the earlier round's attack of the image, where each row starts."""
    number = int(wildcards.round)
    inputs = {
        "stimuli": artifact("stimuli"),
        "site_models": round_site_models(number),
        "surrogate": round_surrogates(),
        "first": artifact("attack", index=wildcards.index),
    }
    if WARM_START and number > 1:
        inputs["previous"] = round_attack_file(number - 1, wildcards.index)
    return inputs


def round_attack_files(number):
    return [round_attack_file(number, index) for index in ATTACK_INDICES]


def earlier_rounds(wildcards):
    """Every earlier round's stimulus set and recordings: what round `wildcards.round` refits on."""
    files = {}
    for number in range(1, int(wildcards.round)):
        files[f"shown_{number}"] = artifact("round_stimuli", round=number)
        files[f"recordings_{number}"] = artifact("round_recordings", round=number)
    return files


def round_sensitivity_files():
    return [artifact("round_sensitivity", round=number) for number in range(1, RECORDED_ROUNDS + 1)]
