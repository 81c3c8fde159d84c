"""Choosing the surrogate: every candidate network screened against the recorded sites.

Each candidate is seen at its configured `layer`; the criteria (`criteria.CRITERIA`) score it:
- `cka`: linear CKA between the features and the trial-averaged site responses on the
  clean stimuli (debiased by default, `screening.cka`), with a jackknife interval over stimuli;
- `predictivity`: Brain-Score's convention for MajajHong2015 IT (PLS regression, stratified
  splits, Pearson r per site on the held-out stimuli, median over sites, mean over splits);
  ceiled score = r^2 / ceiling, the raw r kept beside it;
- `transfer`: perturbations that maximise the change of the whole layer (no mapping to the
  sites at all) are shown to the brain; the noise-corrected population change they cause.

The transfer matrix: every candidate's site-model perturbations evaluated on every other
candidate's site models and on the brain, relative to what the target's own attack achieves.
`surrogate.network: auto` takes the candidate with the best score under `criterion`;
`surrogate.layer: auto` each network's layer with the best `LAYER_CRITERION` score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from neuroattack.analysis.criteria import (
    CRITERIA,
    LAYER_CRITERION,
    CriterionSettings,
    Evidence,
    Representation,
    Score,
)
from neuroattack.analysis.predictivity import PredictivitySettings, ceiling_per_split, pls_components
from neuroattack.analysis.sensitivity import CONFIDENCE
from neuroattack.analysis.transfer import Candidate, TransferSettings, transfer_test
from neuroattack.attacks.settings import AttackSettings
from neuroattack.brain.sitemodels import fit_to_recordings
from neuroattack.data.recordings import aligned_sites, mean_response, repetition_tensor
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import features_layer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteModelSettings:
    """How each candidate's site models are fitted (the `surrogate` section), on `sites` sites."""

    alphas: tuple[float, ...]
    folds: int
    reliability_splits: int
    sites: int | None = None


@dataclass(frozen=True)
class ScreeningSettings:
    """The screening's settings: the criteria's, the candidates' site models', the transfer tests'."""

    seed: int
    criteria: CriterionSettings
    site_models: SiteModelSettings
    transfer: TransferSettings

    @classmethod
    def from_config(
        cls,
        screening: Mapping[str, Any],
        surrogate: Mapping[str, Any],
        seed: int,
        sites: int | None = None,
        repetitions: int = 0,
        recording_seed: int = 0,
    ) -> ScreeningSettings:
        """From the config's `screening` and `surrogate` sections; `repetitions` and
        `recording_seed`: the simulated brain's session (0 with real recordings)."""
        predictivity = PredictivitySettings(
            int(screening["pls_components"]), int(screening["splits"]), float(screening["test_fraction"])
        )
        return cls(
            seed=int(seed),
            criteria=CriterionSettings(
                int(screening["bootstrap"]), int(seed), str(screening.get("cka", "debiased")), predictivity
            ),
            site_models=SiteModelSettings(
                tuple(float(a) for a in surrogate["alphas"]),
                int(surrogate["folds"]),
                int(surrogate["reliability_splits"]),
                None if sites is None else int(sites),
            ),
            transfer=TransferSettings(
                int(screening["images"]), float(screening["eps"]), int(repetitions), int(recording_seed)
            ),
        )


@dataclass(frozen=True)
class ScreeningInputs:
    """The stimuli, recordings, every candidate's weights and features (by name), the simulated
    `brain` (None for real recordings) and, under surrogate.layer: auto, features at other
    layers (each file's attrs name its network and layer)."""

    stimuli: xr.Dataset
    recordings: xr.Dataset
    networks: Mapping[str, xr.Dataset]
    features: Mapping[str, xr.Dataset]
    brain: xr.Dataset | None = None
    layer_features: Mapping[str, xr.Dataset] = field(default_factory=dict)


def screen(
    inputs: ScreeningInputs, settings: ScreeningSettings, attack: AttackSettings, device: torch.device | None = None
) -> xr.Dataset:
    """Every criterion for every network, the transfer matrix, and the pick under each criterion.
    Without `brain` (real recordings) the criteria that need recordings of perturbed images are NaN.
    With `layer_features`, every network's `LAYER_CRITERION` score at each of its layers
    (`layer_predictivity`) and its best layer (`best_layer`)."""
    names = list(inputs.networks)
    layers = {name: features_layer(inputs.features[name]) for name in names}
    candidates = [screening_candidate(name, inputs, settings) for name in names]
    neuroids = candidates[0].site_models["neuroid_id"].values
    device = device or torch.device("cpu")
    tested = transfer_test(
        candidates,
        inputs.stimuli,
        inputs.recordings,
        neuroids,
        settings.transfer,
        attack,
        settings.seed,
        inputs.brain,
        device,
    )
    changes = {(name, layers[name]): change for name, change in tested.changes.items()}
    evidence, kept = recorded_evidence(inputs, neuroids, settings.criteria, changes)
    own = {c.name: score_all(Representation(c.name, layers[c.name], c.features[kept]), evidence) for c in candidates}
    result = scores_dataset(own, names).assign_coords(neuroid_id=("site", neuroids))
    result["training_eps"] = ("candidate", [float(inputs.networks[n].attrs.get("training_eps", np.nan)) for n in names])
    result = result.assign_coords(candidate_layer=("candidate", [layers[n] for n in names]))
    if inputs.layer_features:
        kept_ids = recorded_ids(inputs.recordings)[kept]
        per_layer = scores_by_layer(inputs.layer_features, evidence, kept_ids, {n: (layers[n], own[n]) for n in names})
        result = result.merge(layer_scores(per_layer, names))
    result = result.merge(tested.matrix)
    components = pls_components(
        candidates[-1].features.shape[1], evidence.categories, settings.criteria.predictivity, settings.seed
    )
    result.attrs = screening_attrs(settings, components)
    for criterion in CRITERIA:
        finite = np.isfinite(result[criterion].values).any()
        result.attrs[f"pick_by_{criterion}"] = choose(result, criterion) if finite else ""
    if inputs.brain is not None:
        closeness = closeness_to_brain(result, float(inputs.brain.attrs.get("training_eps", np.nan)))
        result["distance_to_brain"] = closeness["distance_to_brain"]
        result.attrs.update(closeness.attrs)
    return result


def screening_candidate(name: str, inputs: ScreeningInputs, settings: ScreeningSettings) -> Candidate:
    """Network `name` at its features' layer, its features on the recorded stimuli, and its
    site models fitted to the recordings."""
    features = inputs.features[name]
    fit = settings.site_models
    return Candidate(
        name,
        network_from_dataset(inputs.networks[name], name, features_layer(features)),
        inputs.networks[name],
        features["activation"].sel(stimulus_id=recorded_ids(inputs.recordings)).values,
        fit_to_recordings(
            features,
            inputs.recordings,
            inputs.stimuli,
            fit.alphas,
            fit.folds,
            fit.reliability_splits,
            settings.seed,
            fit.sites,
        ),
    )


def recorded_ids(recordings: xr.Dataset) -> np.ndarray:
    """The recorded stimuli, in the order of their trial-averaged responses."""
    return np.asarray(mean_response(recordings)["stimulus_id"].values)


def recorded_evidence(
    inputs: ScreeningInputs,
    neuroids: np.ndarray,
    settings: CriterionSettings,
    transfer_changes: Mapping[tuple[str, str], np.ndarray],
) -> tuple[Evidence, np.ndarray]:
    """The evidence on the recorded stimuli that have a valid trial of every site in `neuroids`,
    and which of the recorded stimuli those are (a boolean mask)."""
    averaged = mean_response(inputs.recordings)
    ids = averaged["stimulus_id"].values
    responses = aligned_sites(averaged, neuroids).values.astype(np.float64)  # (stimulus, site)
    complete = np.asarray(np.isfinite(responses).all(axis=1))
    if not complete.all():
        log.warning(
            "screening: %d of %d stimuli lack a valid trial of some site; CKA and predictivity leave them out",
            int((~complete).sum()),
            len(complete),
        )
    repetitions, _ = repetition_tensor(inputs.recordings)
    recorded_order = list(inputs.recordings["neuroid_id"].values.astype(str))
    site_columns = [recorded_order.index(str(n)) for n in neuroids]
    ceilings = ceiling_per_split(repetitions[:, :, site_columns], settings.predictivity.splits, settings.seed)
    categories = inputs.stimuli["category"].sel(stimulus_id=ids).values
    evidence = Evidence(responses[complete], categories[complete], ceilings, transfer_changes, settings)
    return evidence, complete


def score_all(representation: Representation, evidence: Evidence) -> dict[str, Score]:
    """Every criterion's score of one representation."""
    scores = {name: criterion(representation, evidence) for name, criterion in CRITERIA.items()}
    log.info(
        "%s at %s: %s",
        representation.network,
        representation.layer,
        ", ".join(f"{name} {score.value:.3f}" for name, score in scores.items()),
    )
    return scores


def score_columns(name: str, score: Score) -> dict[str, float]:
    """A score as the screening file's variables: the related numbers, then `name`, `name`_low, `name`_high."""
    return {**score.related, name: score.value, f"{name}_low": score.low, f"{name}_high": score.high}


def scores_dataset(scores: Mapping[str, Mapping[str, Score]], names: Sequence[str]) -> xr.Dataset:
    """Per criterion its value, interval and related numbers, along `candidate`."""
    columns = [
        {k: v for name, score in scores[n].items() for k, v in score_columns(name, score).items()} for n in names
    ]
    return xr.Dataset(
        {key: ("candidate", np.asarray([row[key] for row in columns])) for key in columns[0]},
        coords={"candidate": list(names)},
    )


def scores_by_layer(
    layer_features: Mapping[str, xr.Dataset],
    evidence: Evidence,
    stimulus_ids: np.ndarray,
    own: Mapping[str, tuple[str, Mapping[str, Score]]],
) -> dict[str, dict[str, Score]]:
    """Each network's `LAYER_CRITERION` score at every layer of `layer_features` (in their order),
    on the stimuli of the evidence (`stimulus_ids`), then at its own layer (`own`: per network,
    its layer and scores there)."""
    criterion = CRITERIA[LAYER_CRITERION]
    per_layer: dict[str, dict[str, Score]] = {name: {} for name in own}
    for features in layer_features.values():
        name, layer = str(features.attrs["network"]), features_layer(features)
        values = features["activation"].sel(stimulus_id=stimulus_ids).values
        per_layer[name][layer] = criterion(Representation(name, layer, values), evidence)
        log.info("%s at %s: %s %.3f", name, layer, LAYER_CRITERION, per_layer[name][layer].value)
    for name, (layer, scores) in own.items():  # its own layer last: the penultimate, by default, is the deepest
        per_layer[name][layer] = scores[LAYER_CRITERION]
    return per_layer


def screening_attrs(settings: ScreeningSettings, components: int) -> dict[str, Any]:
    predictivity = settings.criteria.predictivity
    return {
        "pls_components": components,
        "pls_components_requested": predictivity.components,
        "splits": predictivity.splits,
        "test_fraction": predictivity.test_fraction,
        "bootstrap": settings.criteria.bootstrap,
        "confidence": CONFIDENCE,
        "transfer_eps": settings.transfer.eps,
        "cka_form": settings.criteria.cka_form,
    }


def choose(scores: xr.Dataset, criterion: str) -> str:
    """The candidate with the highest score under `criterion` (the first of equals)."""
    if criterion not in CRITERIA:
        raise ValueError(f"screening.criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    values = scores[criterion].values.astype(np.float64)
    if not np.isfinite(values).any():
        raise ValueError(
            f"no candidate has a finite {criterion} score, so surrogate.network: auto cannot choose by it; "
            "set screening.criterion to another criterion, or name the surrogate in surrogate.network"
        )
    return str(scores["candidate"].values[int(np.nanargmax(values))])


def best_layer(scores: Mapping[str, Score]) -> str:
    """The layer with the highest score (the first of equals; NaN never wins)."""
    ranked = {layer: float(np.nan_to_num(score.value, nan=-np.inf)) for layer, score in scores.items()}
    return max(ranked, key=ranked.__getitem__)


def layer_scores(per_layer: Mapping[str, Mapping[str, Score]], names: Sequence[str]) -> xr.Dataset:
    """`layer_predictivity` (and its interval) per (candidate, layer) from each candidate's
    scores by layer (NaN where a layer was not scored), and each candidate's `best_layer`."""
    # the scored networks' layers in their order (listed, then their own), then others' own
    scored = [name for name in names if len(per_layer[name]) > 1]
    layers = list(dict.fromkeys(layer for name in [*scored, *names] for layer in per_layer[name]))
    missing = Score.missing()
    table = [[per_layer[n].get(layer, missing) for layer in layers] for n in names]
    values = {
        "": [[score.value for score in row] for row in table],
        "_low": [[score.low for score in row] for row in table],
        "_high": [[score.high for score in row] for row in table],
    }
    return xr.Dataset(
        {
            **{
                f"layer_{LAYER_CRITERION}{suffix}": (("candidate", "layer"), np.array(v))
                for suffix, v in values.items()
            },
            "best_layer": ("candidate", [best_layer(per_layer[n]) for n in names]),
        },
        coords={"candidate": list(names), "layer": layers},
    )


def best_layer_features(screening: xr.Dataset, network: str, features: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """Of `features` (one file per layer of `network`), the one at the screening's `best_layer`
    for it, marked as chosen."""
    if "best_layer" not in screening:
        raise ValueError("the screening file has no per-layer scores; rerun it with surrogate.layer: auto")
    best = str(screening["best_layer"].sel(candidate=network).values)
    at_best = [f for f in features.values() if features_layer(f) == best]
    if not at_best:
        raise ValueError(f"network {network}: the screening chose layer {best!r}, but no features file is at it")
    chosen = at_best[0].copy()
    predictivity = float(screening["layer_predictivity"].sel(candidate=network, layer=best))
    chosen.attrs["layer_chosen_by"] = f"the screening's ceiled predictivity ({predictivity:.3f})"
    return chosen


def closeness_to_brain(scores: xr.Dataset, brain_eps: float) -> xr.Dataset:
    """In silico the answer is known: `distance_to_brain` = |training eps - the brain network's|,
    and per criterion the Spearman correlation between its scores and closeness (-distance):
    1 when the criterion ranks the candidates exactly by closeness to the brain."""
    distance = np.abs(scores["training_eps"].values.astype(np.float64) - brain_eps)
    agreement = {}
    for criterion in CRITERIA:
        values = scores[criterion].values.astype(np.float64)
        usable = np.isfinite(values)
        closeness = pd.Series(-distance[usable])
        rho = pd.Series(values[usable]).corr(closeness, method="spearman") if usable.sum() > 2 else np.nan
        agreement[f"closeness_rank_correlation_{criterion}"] = float(rho)
    result = xr.Dataset({"distance_to_brain": ("candidate", distance)}, coords={"candidate": scores["candidate"]})
    result.attrs = {"brain_training_eps": brain_eps, **agreement}
    return result
