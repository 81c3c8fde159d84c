"""Every artifact of a run: where it lives under `results`, and, for the netCDF intermediates,
the kind its readers check (the rule that makes it; the variables, dims and attrs they need).

The Snakefile takes every path from `PATHS` and `io.read_dataset` every schema from
`INTERMEDIATES`, so the two cannot drift apart. The standard library only: building the DAG
imports this module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

# Artifact name -> path under the results folder; {braces} are the rules' wildcards. {subject} is
# what a recording records: "" for the brain, "subjects/<network>/" for a network measured through
# the brain's own black-box pipeline as if it were the brain (config `like_for_like`).
PATHS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "stimuli": "stimuli/stimuli.nc",
        "training_data": "training_data/images.nc",
        "network": "networks/{network}.nc",
        "features": "features/{network}.nc",
        "surrogate_network": "surrogate/network.nc",
        "surrogate_features": "surrogate/features.nc",
        "best_layer_features": "surrogate/best_layer/{network}.nc",
        "brain": "{subject}brain/brain.nc",
        "recordings": "{subject}recordings/{stimulus_set}.nc",
        "unit_attack": "attacks/image{index}.nc",
        "white_box": "{subject}validation/brain_white_box.nc",
        "sensitivity": "sensitivity/sensitivity.nc",
        "transfer": "sensitivity/transfer.nc",
        "preference": "preference/category_preference.nc",
        "screening": "screening/screening.nc",
        "round_network": "{subject}rounds/round{round}/networks/{network}.nc",
        "round_site_models": "{subject}rounds/round{round}/site_models.nc",
        "round_member_site_models": "{subject}rounds/round{round}/ensemble/{network}.nc",
        "round_attack": "{subject}rounds/round{round}/attacks/image{index}.nc",
        "round_stimuli": "{subject}rounds/round{round}/stimuli.nc",
        "round_responses": "{subject}rounds/round{round}/responses.nc",
        "round_sensitivity": "{subject}rounds/round{round}/sensitivity.nc",
        # not netCDF: pictures, tables and stimulus sets for people and rigs (no suffix: several)
        "figure": "figures/figure{number}",
        "sensitivity_table": "report/sensitivity_table.html",
        "headline": "report/headline.html",
        "screening_rig_stimuli": "rig/screening_stimuli",
        "round_rig_stimuli": "rig/round{round}/stimuli",
        "log": "logs/{name}.log",
    }
)


def artifact_path(results: str, name: str, /, **wildcards: object) -> str:
    """Where artifact `name` of PATHS lives under `results`; a wildcard not given stays a
    wildcard (`{round}`), so rules use the same call for outputs and inputs."""
    if name not in PATHS:
        raise KeyError(f"no artifact {name!r}; the artifacts are {', '.join(PATHS)}")
    pattern = PATHS[name]
    filled = pattern.format_map(_KeepMissing({key: str(value) for key, value in wildcards.items()}))
    return os.path.join(results, filled)


class _KeepMissing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclasses.dataclass(frozen=True)
class Intermediate:
    """One kind of intermediate file: the rule(s) that make it (the usual one first; the
    others make it from outside inputs or in later loop rounds), the artifacts (PATHS) of
    this kind, and what its readers need."""

    rules: tuple[str, ...]
    paths: tuple[str, ...]
    variables: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()

    @property
    def made_by(self) -> str:
        first, *others = self.rules
        return f"rule {first}" + (f" (or {', '.join(others)})" if others else "")


Kind = Literal[
    "stimuli",
    "training_data",
    "network",
    "brain",
    "features",
    "recordings",
    "site_models",
    "site_attack",
    "unit_attack",
    "responses",
    "white_box",
    "sensitivity",
    "transfer",
    "preference",
    "screening",
    "round_stimuli",
    "round_sensitivity",
]

INTERMEDIATES: Final[Mapping[str, Intermediate]] = MappingProxyType(
    {
        "stimuli": Intermediate(
            ("stimuli",), ("stimuli",), ("pixels", "category"), ("stimulus_id", "y", "x", "channel")
        ),
        "training_data": Intermediate(
            ("training_data",),
            ("training_data",),
            ("pixels", "label", "split", "category_name"),
            ("image", "y", "x", "channel", "category"),
        ),
        "network": Intermediate(
            ("train_network", "convert_checkpoint", "import_network", "chosen_surrogate", "finetune_member"),
            ("network", "surrogate_network", "round_network"),
            attrs=("architecture",),
        ),
        "brain": Intermediate(
            ("build_brain",),
            ("brain",),
            ("readout_weight", "readout_bias", "neuroid_id"),
            ("site", "feature"),
            ("architecture", "gain", "baseline_count", "beta"),
        ),
        "features": Intermediate(
            ("features", "chosen_surrogate", "best_layer_features"),
            ("features", "surrogate_features", "best_layer_features"),
            ("activation",),
            ("stimulus_id", "unit"),
            ("network",),
        ),
        "recordings": Intermediate(
            ("record", "import_recordings", "ingest_perturbed_recordings"),
            ("recordings",),
            ("response", "stimulus_id", "repetition", "neuroid_id"),
            ("presentation", "site"),
        ),
        "site_models": Intermediate(
            ("site_models", "refit_site_models", "ensemble_site_models"),
            ("round_site_models", "round_member_site_models"),
            ("weight", "bias", "neuroid_id", "reliability", "predictivity"),
            ("site", "feature"),
        ),
        "site_attack": Intermediate(
            ("attack_round",),
            ("round_attack",),
            ("site_clean", "site_change", "site_random_change", "perturbed", "neuroid_id"),
            ("site", "eps", "direction"),
            ("stimulus_id",),
        ),
        "unit_attack": Intermediate(
            ("attack_units",),
            ("unit_attack",),
            ("unit_change", "unit_random_change", "unit_index", "network"),
            ("unit", "eps", "direction"),
            ("stimulus_id",),
        ),
        "responses": Intermediate(
            ("round_responses",),
            ("round_responses",),
            ("predicted_change", "recorded_change", "random_recorded_change", "random_squared_change"),
            ("site", "image", "eps", "direction"),
        ),
        "white_box": Intermediate(
            ("brain_white_box",), ("white_box",), ("change", "sigma"), ("site", "image", "eps", "direction")
        ),
        "sensitivity": Intermediate(
            ("sensitivity",),
            ("sensitivity",),
            ("s_tilde", "ci_low", "ci_high", "random_pair_level"),
            ("population", "eps"),
        ),
        "transfer": Intermediate(
            ("transfer_ratios",),
            ("transfer",),
            ("ratio", "ratio_low", "ratio_high", "black_box", "white_box"),
            ("subject", "round", "eps"),
        ),
        "preference": Intermediate(
            ("category_preference",),
            ("preference",),
            (
                "clean_predicted",
                "attacked_predicted",
                "preferred_mean",
                "nonpreferred_mean",
                "natural_response",
                "natural_max",
                "natural_min",
                "neuroid_id",
            ),
            ("site", "eps", "image", "reference"),
        ),
        "screening": Intermediate(
            ("screening",),
            ("screening",),
            ("cka", "predictivity", "predictivity_r", "ceiling", "transfer", "transfer_change", "transfer_relative"),
            ("candidate", "attacker", "target"),
            ("pick_by_predictivity", "pick_by_cka", "pick_by_transfer"),
        ),
        "round_stimuli": Intermediate(
            ("round_stimuli",),
            ("round_stimuli",),
            ("pixels", "category", "clean_stimulus_id", "clean_category", "target_neuroid_id", "eps", "direction"),
            ("stimulus_id", "y", "x", "channel"),
            ("round",),
        ),
        "round_sensitivity": Intermediate(
            ("round_sensitivity",),
            ("round_sensitivity",),
            ("s_tilde", "ci_low", "ci_high"),
            ("population", "eps"),
            ("round",),
        ),
    }
)
