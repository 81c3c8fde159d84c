"""Config normalisation: formatting and key order never reach a rule's params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neuroattack.config import canonical, config_entry, science, with_schema_types

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
