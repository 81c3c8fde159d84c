"""The workflow's config, normalised so that only its values, never its formatting, decide reruns.

Snakemake reruns a job when the text of one of its params changes. YAML formatting must
not count: `eps: [1, 3]` and `eps: [1.0, 3.0]` are one grid, and key order is not a value.
`with_schema_types` casts every number the schema calls a `number` to float, and
`science` gives a section's values with sorted keys, without the keys that cannot
change a result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Keys that only tune speed or memory: the same numbers come out whatever their value.
PERFORMANCE_KEYS = frozenset({"chunk_rows"})

# Downloaded networks (`networks.<name>` with a `checkpoint`): the torchvision architecture
# that the checkpoint holds, and the norm of its adversarial training (eps in pixels in [0, 1]).
CHECKPOINT_ARCHITECTURES = ("resnet18", "resnet50", "wide_resnet50_2")
DEFAULT_CHECKPOINT_ARCHITECTURE = "resnet50"
NORMS = ("l2", "linf")
DEFAULT_NORM = "l2"


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
        properties = schema.get("properties", {})
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


def canonical(value: Any) -> Any:
    """Mappings with sorted keys, at every depth (lists keep their order: it is a value)."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def science(section: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The values of a config section that can change a result, in canonical form:
    without `drop` (keys that a rule handles otherwise) and without performance keys."""
    skipped = PERFORMANCE_KEYS | set(drop)
    return {key: canonical(section[key]) for key in sorted(section) if key not in skipped}


def config_entry(config: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The value at `keys` (e.g. ["stimuli", "csv"]) of a nested config; a KeyError names the dotted key."""
    node: Any = config
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"config has no key {'.'.join(keys[: depth + 1])!r}")
        node = node[key]
    return node
