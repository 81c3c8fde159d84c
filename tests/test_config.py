"""Config normalisation: formatting and key order never reach a rule's params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neuroattack.config import (
    EMBEDDED_PHOTOGRAPHS,
    ConfigError,
    KnownStimuli,
    canonical,
    config_entry,
    describe,
    known_stimuli,
    science,
    validate_config,
    with_schema_types,
)
from neuroattack.data.stimuli import CATEGORIES

REPO = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def test_integers_written_for_numbers_become_floats_and_integers_stay() -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["attack"]["eps"] = [1, 3]
    config["attack"]["wide_ball_factor"] = 2
    config["networks"]["standard"]["eps"] = 0
    typed = with_schema_types(config, SCHEMA)
    assert typed["attack"]["eps"] == [1.0, 3.0] and all(type(e) is float for e in typed["attack"]["eps"])
    assert type(typed["attack"]["wide_ball_factor"]) is float
    assert type(typed["networks"]["standard"]["eps"]) is float  # through additionalProperties and $ref
    assert type(typed["attack"]["steps"]) is int and type(typed["seed"]) is int
    assert typed["recordings"]["sites"] is None


def test_science_sorts_keys_at_every_depth_and_drops_what_cannot_change_a_number() -> None:
    section = {"steps": 3, "chunk_rows": 128, "eps": [0.5, 0.1], "nested": {"b": 1, "a": 2}, "images": 4}
    kept = science(section, drop=["images"])
    assert list(kept) == ["eps", "nested", "steps"]
    assert list(kept["nested"]) == ["a", "b"]
    assert kept["eps"] == [0.5, 0.1]  # list order is a value
    assert repr(science(dict(reversed(list(section.items()))), drop=["images"])) == repr(kept)


def test_canonical_leaves_scalars_alone() -> None:
    assert canonical(0.5) == 0.5 and canonical("x") == "x" and canonical(None) is None


def test_config_entry_walks_nested_keys_and_names_a_missing_one() -> None:
    config = {"stimuli": {"csv": {"urls": ["file:///a"]}}, "networks": {"n": {"eps": 1.0}}}
    assert config_entry(config, ["stimuli", "csv"]) == {"urls": ["file:///a"]}
    assert config_entry(config, ["networks", "n", "eps"]) == 1.0
    with pytest.raises(KeyError, match=r"stimuli\.zip"):
        config_entry(config, ["stimuli", "zip", "url"])
    with pytest.raises(KeyError, match=r"networks\.n\.eps\.x"):
        config_entry(config, ["networks", "n", "eps", "x"])


# --- validation: the key, the value, what is allowed; nothing of the schema ------------------


def tiny() -> dict:  # type: ignore[type-arg]
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("attack", "restarts", 0, "attack.restarts = 0: allowed: a whole number >= 1"),
        ("attack", "stepz", 3, "attack.stepz = 3: unknown key (allowed here: images, eps, steps, restarts,"),
        ("attack", "eps", "large", 'attack.eps = "large": allowed: a list of at least 1 item(s), each a number > 0'),
        ("attack", "precision", "fp8", 'attack.precision = "fp8": allowed: one of "auto", "float32", "mixed", "bf16"'),
        (
            "recordings",
            "time_window_ms",
            [70],
            "recordings.time_window_ms = [70]: allowed: a list of exactly 2 item(s)",
        ),
        ("networks", "standard", {"eps": 0.0}, 'networks.standard = {"eps": 0.0}: needs exactly one of the keys seed'),
    ],
)
def test_schema_errors_name_key_value_and_what_is_allowed(section: str, key: str, value: object, expected: str) -> None:
    config = tiny()
    config[section][key] = value
    with pytest.raises(ConfigError) as caught:
        validate_config(config, SCHEMA)
    message = str(caught.value)
    assert expected in message, message
    assert len(message.splitlines()) == 2  # the heading and the one offending key
    assert "definitions" not in message and "$ref" not in message and "description" not in message


def test_a_missing_required_key_is_named() -> None:
    config = tiny()
    del config["stimuli"]["per_category"]
    with pytest.raises(ConfigError, match=r"stimuli\.per_category: missing \(a required key\)"):
        validate_config(config, SCHEMA)


def test_every_shipped_config_is_valid() -> None:
    for path in sorted((REPO / "config").glob("*.yaml")):
        validate_config(yaml.safe_load(path.read_text()), SCHEMA)


def test_describe_reads_references_and_bounds() -> None:
    assert describe({"$ref": "#/definitions/positive_int"}, SCHEMA) == "a whole number >= 1"
    assert describe({"type": ["string", "null"]}) == "text or null"


# --- what is known of the stimulus set before any job runs ------------------------------------


def test_known_stimuli_counts_images_and_categories_before_any_job(tmp_path: Path) -> None:
    assert len(CATEGORIES) == EMBEDDED_PHOTOGRAPHS
    embedded = known_stimuli({"source": "embedded", "per_category": 6})
    assert (embedded.count, embedded.categories) == (72, EMBEDDED_PHOTOGRAPHS)
    folder = tmp_path / "images"
    (folder / "cars").mkdir(parents=True)
    (folder / "faces").mkdir()
    for name in ("a.png", "b.JPG", ".hidden.png", "notes.txt"):
        (folder / "cars" / name).write_bytes(b"")
    (folder / "faces" / "notes.txt").write_bytes(b"")  # a folder without images is no category
    (folder / "loose.png").write_bytes(b"")  # an image directly in the folder: category 'none'
    found = known_stimuli({"source": "folder", "path": str(folder)})
    assert (found.count, found.categories, found.origin) == (3, 2, f"images in {folder}")
    absent = known_stimuli({"source": "folder", "path": str(tmp_path / "absent")})
    assert (absent.count, absent.categories) == (None, None)
    csv = tmp_path / "set.csv"
    assert known_stimuli({"source": "brainscore"}, csv).count is None  # not downloaded yet
    csv.write_text('image_id,filename,category_name\na,"a.png",cars\nb,b.png,cars\nc,c.png,faces\n')
    assert known_stimuli({"source": "brainscore"}, csv) == KnownStimuli(3, 2, f"rows of {csv}")
    csv.write_text('image_id,filename\na,"a.png"\n')  # no category column: the stimuli job says so
    assert known_stimuli({"source": "brainscore"}, csv) == KnownStimuli(1, None, f"rows of {csv}")
