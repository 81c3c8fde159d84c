"""The workflow's config, normalised so that only its values, never its formatting, decide reruns.

Snakemake reruns a job when the text of one of its params changes. YAML formatting must
not count: `eps: [1, 3]` and `eps: [1.0, 3.0]` are one grid, and key order is not a value.
`with_schema_types` casts every number the schema calls a `number` to float, and
`science` gives a section's values with sorted keys, without the keys that cannot
change a result. `validate_config` checks a config against the schema and names each
offending key, its value and what is allowed (and prints nothing of the schema itself);
`known_stimuli` tells, before any job runs, how many stimuli and categories there will be.

The Snakefile imports this module, so it uses the standard library only (fast to load).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# The counting window of recordings when the config names none (recordings.time_window_ms).
TIME_WINDOW_MS: tuple[int, int] = (70, 170)
# Photographs of the embedded stimulus set (neuroattack.data.stimuli.CATEGORIES; a test keeps them equal).
EMBEDDED_PHOTOGRAPHS = 12
# The category column of a Brain-Score stimulus set's CSV (neuroattack.data.stimuli reads it).
BRAINSCORE_CATEGORY_COLUMN = "category_name"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Keys that only tune speed or memory: the same numbers come out whatever their value.
PERFORMANCE_KEYS = frozenset({"chunk_rows"})

# Options that are off at these values: written out or left out, the same result (no rerun).
OFF_VALUES: Mapping[str, Any] = {"input_diversity": 0, "momentum": 0}
SURROGATE_MEMBER = "surrogate"  # the single surrogate's name in the loop's files (it may be chosen by the screening)
# The attack's transfer options: they shape black-box attacks on site models only.
TRANSFER_KEYS = ("input_diversity", "momentum")

# Downloaded networks (`networks.<name>` with a `checkpoint`): the torchvision architecture
# that the checkpoint holds, and the norm of its adversarial training (eps in pixels in [0, 1]).
CHECKPOINT_ARCHITECTURES = ("resnet18", "resnet50", "wide_resnet50_2")
DEFAULT_CHECKPOINT_ARCHITECTURE = "resnet50"
# The keys of a `networks` entry that name a user's model (`networks.zoo` builds it): a torchvision
# or timm model, or a user's factory function.
MODEL_KINDS = ("torchvision", "timm", "factory")
NORMS = ("l2", "linf")
DEFAULT_NORM = "l2"
BRAIN = "brain"  # the simulated brain's network among the run's networks (its files, its jobs' wildcard)
PENULTIMATE = "penultimate"  # a network's default layer (`networks.<name>.layer`): its classifier's input
VIEW_SEPARATOR = "@"  # a network seen at another layer (`attack.layers`): "<network>@<layer>"
# The two objectives of every attack (attack and preference `direction`): raise or lower the
# response, and the sign of the response change each seeks.
Direction = Literal["increase", "decrease"]
DIRECTIONS: tuple[Direction, ...] = ("increase", "decrease")
DIRECTION_SIGNS = (1.0, -1.0)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` ("#/definitions/name")."""
    while "$ref" in schema:
        node: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _types(schema: Mapping[str, Any]) -> set[str]:
    kinds = schema.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def with_schema_types(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """`value` with every integer written where the schema asks for a `number` turned into a float."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and "number" in _types(schema) and "integer" not in _types(schema):
        return float(value)
    if isinstance(value, Mapping):
        properties = _all_properties(schema, root)
        extra = schema.get("additionalProperties")
        result = {}
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, Mapping) else {})
            result[key] = with_schema_types(item, child, root)
        return result
    if isinstance(value, list):
        items = schema.get("items", {})
        return [with_schema_types(item, items, root) for item in value]
    return value


def _all_properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """The properties a mapping may have: the schema's own, then those of its conditional branches
    (then, else), where an entry takes one of several shapes (as `brain.network` does)."""
    properties = dict(schema.get("properties", {}))
    for branch in ("then", "else"):
        if branch in schema:
            for key, child in _resolve(schema[branch], root).get("properties", {}).items():
                properties.setdefault(key, child)
    return properties


def canonical(value: Any) -> Any:
    """Mappings with sorted keys, at every depth (lists keep their order: it is a value)."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def science(section: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The values of a config section that can change a result, in canonical form:
    without `drop` (keys that a rule handles otherwise), performance keys and options that are off."""
    skipped = PERFORMANCE_KEYS | set(drop)
    return {
        key: canonical(section[key])
        for key in sorted(section)
        if key not in skipped and not (key in OFF_VALUES and section[key] == OFF_VALUES[key])
    }


def depth_view(network: str, layer: str) -> str:
    """The name of network `network` seen at `layer` for sensitivity by depth (`attack.layers`):
    its features file, its units' `network` coord and its population in the sensitivity file."""
    return f"{network}{VIEW_SEPARATOR}{layer}"


def split_view(name: str) -> tuple[str, str | None]:
    """(network, layer) of a depth view's name; (name, None) for a network's own name."""
    network, separator, layer = name.partition(VIEW_SEPARATOR)
    return (network, layer) if separator else (name, None)


def _listed(given: Any, name: str) -> list[str]:
    """One list for every network, or lists by network name: network `name`'s, duplicates dropped."""
    return list(dict.fromkeys(given if isinstance(given, list) else (given or {}).get(name, [])))


def surrogate_networks(config: Mapping[str, Any]) -> list[str]:
    """The networks whose site models may attack: the named surrogate (every network when
    surrogate.network is auto) and every ensemble member."""
    named = config["surrogate"]["network"]
    candidates = list(config["networks"]) if named == "auto" else [named]
    return list(dict.fromkeys([*candidates, *(config["loop"].get("ensemble") or [])]))


def model_kind(spec: Mapping[str, Any]) -> str | None:
    """Which kind of user's model (MODEL_KINDS) a `networks` entry names, if any."""
    return next((kind for kind in MODEL_KINDS if kind in spec), None)


def network_entry(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The config entry of network `name`: `networks.<name>`, or the brain's, `brain.network` (BRAIN)."""
    entry: Mapping[str, Any] = config["brain"]["network"] if name == BRAIN else config["networks"][name]
    return entry


def entry_keys(name: str) -> list[str]:
    """The config keys of network `name`'s entry (a network's name may hold dots: a list, not a dotted key)."""
    return ["brain", "network"] if name == BRAIN else ["networks", name]


def built_networks(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every network the run builds, by name, with its entry: the `networks` section's and, where
    the simulated brain records, the brain's (BRAIN), last."""
    built = dict(config["networks"])
    if config["recordings"]["source"] == "simulated":
        built[BRAIN] = config["brain"]["network"]
    return built


def own_layer(config: Mapping[str, Any], name: str) -> str:
    """The layer network `name` is seen at (`networks.<name>.layer`, or the brain's
    `brain.network.layer`; default the penultimate)."""
    return str(network_entry(config, name).get("layer", PENULTIMATE))


def _added_layers(config: Mapping[str, Any], given: Any, names: Iterable[str]) -> dict[str, list[str]]:
    """Per network of `names`, the layers `given` lists for it besides its own, in order."""
    return {name: [layer for layer in _listed(given, name) if layer != own_layer(config, name)] for name in names}


def layer_candidates(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """With surrogate.layer: auto, per surrogate network the layers of surrogate.layers scored
    besides its own (whose features exist anyway); else none."""
    surrogate = config["surrogate"]
    if surrogate.get("layer") != "auto":
        return {}
    return _added_layers(config, surrogate.get("layers"), surrogate_networks(config))


def depth_layers(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per network, the layers `attack.layers` adds to its own (one list for every network, or
    lists by network name), in the order given."""
    return _added_layers(config, config["attack"].get("layers"), config["networks"])


def layers_by_depth(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per network with attack.layers, every layer whose units are attacked, in depth order:
    the order attack.layers gives, the network's own layer where the list names it, else last
    (its default, the penultimate layer, is the deepest)."""
    ordered = {}
    for name, added in depth_layers(config).items():
        if added:
            wanted = _listed(config["attack"].get("layers"), name)
            own = own_layer(config, name)
            ordered[name] = wanted if own in wanted else [*wanted, own]
    return ordered


def config_entry(config: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The value at `keys` (e.g. ["stimuli", "csv"]) of a nested config; a KeyError names the dotted key."""
    node: Any = config
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"config has no key {'.'.join(keys[: depth + 1])!r}")
        node = node[key]
    return node


# --------------------------------------------------------------------------- validation


class ConfigError(ValueError):
    """The config breaks its schema; the message names each offending key, its value and what is allowed."""


_NOUNS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a mapping",
}
_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def describe(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> str:
    """What a schema allows, in a few words (`{type: integer, minimum: 1}`: 'a whole number >= 1')."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "enum" in schema:
        return "one of " + ", ".join(_show(v) for v in schema["enum"])
    if "const" in schema:
        return _show(schema["const"])
    if "not" in schema:
        return f"anything but {describe(schema['not'], root)}"
    kinds = [kind for kind in _NOUNS if kind in _types(schema)]
    words = [" or ".join(_NOUNS[kind] for kind in kinds) or "a value"]
    words += [f"{sign} {_show(schema[key])}" for key, sign in _BOUNDS.items() if key in schema]
    if "pattern" in schema:
        words.append(f"matching {schema['pattern']}")
    if "minLength" in schema:
        words.append(f"of at least {schema['minLength']} character(s)")
    if "array" in kinds:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and low == high:
            words.append(f"of exactly {low} item(s)")
        elif low is not None:
            words.append(f"of at least {low} item(s)")
        elif high is not None:
            words.append(f"of at most {high} item(s)")
        if "items" in schema:
            words[-1] += ","
            words.append(f"each {describe(schema['items'], root)}")
        if schema.get("uniqueItems"):
            words[-1] += ","
            words.append("without repeats")
    if "object" in kinds and "properties" in schema:
        words.append("with keys " + ", ".join(schema["properties"]))
    return " ".join(words)


def _show(value: Any) -> str:
    """A config value as the user wrote it (JSON, which is also YAML), cut to one short line."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(path: Iterable[Any]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _explain(error: Any, root: Mapping[str, Any]) -> str:
    """One line for one jsonschema ValidationError: the key, the value, what is allowed."""
    path = list(error.absolute_path)
    kind, expected = error.validator, error.validator_value
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(error.schema.get("properties", {})) or "none"
        return "; ".join(
            f"{_key([*path, name])} = {_show(error.instance[name])}: unknown key (allowed here: {allowed})"
            for name in extra
        )
    if kind == "required":
        missing = [name for name in expected if name not in error.instance]
        return "; ".join(f"{_key([*path, name])}: missing (a required key)" for name in missing)
    if kind in ("oneOf", "anyOf"):
        options = [_resolve(option, root) for option in expected]
        if all(set(option) == {"required"} for option in options):
            keys = " or ".join("+".join(option["required"]) for option in options)
            word = "exactly one" if kind == "oneOf" else "at least one"
            return f"{_key(path)} = {_show(error.instance)}: needs {word} of the keys {keys}"
        return f"{_key(path)} = {_show(error.instance)}: allowed: {' | '.join(describe(o, root) for o in options)}"
    if kind == "minProperties":
        return f"{_key(path)} = {_show(error.instance)}: needs at least {expected} entry(ies)"
    if kind == "propertyNames" or (error.relative_schema_path and "propertyNames" in error.relative_schema_path):
        return (
            f"{_key(path)}: the name {_show(error.instance)} is not allowed (allowed: {describe(error.schema, root)})"
        )
    if kind == "not" and "description" in error.schema:
        return f"{_key(path)} = {_show(error.instance)}: not allowed: {error.schema['description']}"
    if kind == "uniqueItems":
        return f"{_key(path)} = {_show(error.instance)}: allowed: a list without repeats"
    return f"{_key(path)} = {_show(error.instance)}: allowed: {describe(error.schema, root)}"


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check `config` against the JSON schema; on failure raise ConfigError with one line per
    problem (the key path, the value given, what the schema allows) and nothing of the schema."""
    import jsonschema  # the workflow's dependency; imported here so the library imports without it

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_explain(error, schema) for error in errors]
        raise ConfigError("invalid config (README.md, 'Configuration'):\n  " + "\n  ".join(lines))


# ------------------------------------------------------------------- checks at start


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of an image folder, in sorted path order: files with an image suffix,
    hidden files and folders skipped (what `data.stimuli.image_folder_to_stimuli` reads)."""
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


@dataclass(frozen=True)
class KnownStimuli:
    """What the `stimuli` config section gives before any job runs: the number of stimuli and of
    categories (None where unknown yet) and where they come from, in words."""

    count: int | None
    categories: int | None
    origin: str


def known_stimuli(stimuli: Mapping[str, Any], csv_path: str | os.PathLike[str] | None = None) -> KnownStimuli:
    """The stimulus set's size and categories where they are known before any job runs; unknown
    for a Brain-Score set whose CSV, `csv_path`, is not downloaded yet, or a missing folder."""
    source = stimuli["source"]
    if source == "embedded":
        count = EMBEDDED_PHOTOGRAPHS * int(stimuli["per_category"])
        origin = f"{EMBEDDED_PHOTOGRAPHS} photographs x stimuli.per_category {stimuli['per_category']}"
        return KnownStimuli(count, EMBEDDED_PHOTOGRAPHS, origin)
    if source == "folder":
        if not Path(stimuli["path"]).is_dir():
            return KnownStimuli(None, None, f"no folder {stimuli['path']}")
        root = Path(stimuli["path"])
        files = image_files(root)
        # an image's category is its first-level subfolder ('none' for images directly in the folder)
        categories = {
            path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else "" for path in files
        }
        return KnownStimuli(len(files), len(categories), f"images in {stimuli['path']}")
    if source == "brainscore" and csv_path is not None and Path(csv_path).is_file():
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        labels: set[str | None] = {row.get(BRAINSCORE_CATEGORY_COLUMN) for row in rows}
        known = None if None in labels else len(labels)
        return KnownStimuli(len(rows), known, f"rows of {os.fspath(csv_path)}")
    return KnownStimuli(None, None, "the stimulus set is not downloaded yet")
