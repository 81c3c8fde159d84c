"""The screening's criteria: how well a network's representation at one layer matches the
recorded sites. Every criterion has the same signature, (representation, evidence) -> Score,
and `CRITERIA` holds them by the names `screening.criterion` takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from neuroattack.analysis.cka import cka_interval
from neuroattack.analysis.predictivity import PredictivitySettings, predictivity, split_correlations
from neuroattack.analysis.transfer import population_change


@dataclass(frozen=True)
class Score:
    """A criterion's value and its interval; `related`: further numbers measured on the way,
    written beside it (predictivity: the raw r, its interval and the ceiling)."""

    value: float
    low: float
    high: float
    related: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def missing(cls) -> Score:
        return cls(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class Representation:
    """One network seen at one layer: its features (stimulus, unit) on the stimuli of the evidence."""

    network: str
    layer: str
    features: np.ndarray


@dataclass(frozen=True)
class CriterionSettings:
    """`bootstrap` resamples and `seed` for the intervals that resample; the CKA's form; PLS settings."""

    bootstrap: int
    seed: int
    cka_form: str = "debiased"
    predictivity: PredictivitySettings = field(default_factory=PredictivitySettings)


@dataclass(frozen=True)
class Evidence:
    """What a representation is scored against: trial-averaged `responses` (stimulus, site) on
    the stimuli every site has a valid trial of, their `categories`, the `ceilings` (one per
    split), and per (network, layer) the noise-corrected change per image that perturbations of
    that layer caused in the brain (`transfer_changes`; empty without recordings of perturbed images)."""

    responses: np.ndarray
    categories: np.ndarray
    ceilings: np.ndarray
    transfer_changes: Mapping[tuple[str, str], np.ndarray]
    settings: CriterionSettings


Criterion = Callable[[Representation, Evidence], Score]


def cka_score(representation: Representation, evidence: Evidence) -> Score:
    """Linear CKA between the features and the responses, with its jackknife interval."""
    return Score(*cka_interval(representation.features, evidence.responses, evidence.settings.cka_form))


def predictivity_score(representation: Representation, evidence: Evidence) -> Score:
    """Ceiled predictivity (Brain-Score's convention) with its bootstrap interval over sites;
    the raw r (and its interval) and the ceiling beside it."""
    settings = evidence.settings
    correlations, _ = split_correlations(
        representation.features, evidence.responses, evidence.categories, settings.predictivity, settings.seed
    )
    measured = predictivity(correlations, evidence.ceilings, settings.bootstrap, settings.seed)
    related = {key: measured[key] for key in ("predictivity_r", "predictivity_r_low", "predictivity_r_high", "ceiling")}
    return Score(measured["predictivity"], measured["predictivity_low"], measured["predictivity_high"], related)


def transfer_score(representation: Representation, evidence: Evidence) -> Score:
    """The r.m.s. change per site (s.d.) that perturbations of the whole layer caused in the
    brain, with its bootstrap interval over images; NaN without recordings of them."""
    changes = evidence.transfer_changes.get((representation.network, representation.layer))
    if changes is None:
        return Score.missing()
    return Score(*population_change(changes, evidence.settings.bootstrap, evidence.settings.seed))


CRITERIA: Mapping[str, Criterion] = MappingProxyType(
    {"predictivity": predictivity_score, "cka": cka_score, "transfer": transfer_score}
)
LAYER_CRITERION = "predictivity"  # what surrogate.layer: auto scores each layer by (Brain-Score's layer commitment)
