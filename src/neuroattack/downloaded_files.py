"""The files a run downloads: the local name of each (from its remote-file entry in the
config) and where it is kept.

Standard library only: building the DAG imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuroattack.config import built_networks, config_entry, entry_keys, network_entry
from neuroattack.remote import remote_file_name


def downloaded(config: Mapping[str, Any], name: str) -> str:
    """Where downloaded file `name` (download_name's) is kept."""
    return str(Path(config.get("downloads", "downloads")) / name)


def download_name(remote: Mapping[str, Any], folder: str) -> str:
    """Local name of a download, in `folder`: the entry's `name`, else its first URL's last path
    segment. Which mirror answers, and the mirrors after the first, never change it."""
    return f"{folder}/{remote_file_name(remote)}"


def weights_file(config: Mapping[str, Any], name: str) -> str | None:
    """Local name of the weights file of network `name`, a user's (the brain's too), if it has one
    (its suffix tells the format)."""
    spec = network_entry(config, name)
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
    networks = built_networks(config)  # the brain's network among them
    checkpoints = [name for name, spec in networks.items() if "checkpoint" in spec]
    entries += [(f"checkpoints/{name}.ckpt", [*entry_keys(name), "checkpoint"]) for name in checkpoints]
    weights = [(weights_file(config, name), name) for name in networks]
    return entries + [(local, [*entry_keys(name), "weights"]) for local, name in weights if local is not None]


def downloads(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """{local name: config keys of its remote-file entry} of every file the config downloads."""
    return dict(download_entries(config))


def download_problems(config: Mapping[str, Any]) -> list[str]:
    """Two entries of the config that would be downloaded to one local file, one sentence each."""
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
