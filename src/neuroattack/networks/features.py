"""Penultimate-layer features of a network on the stimulus set, and the units sampled from them."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from neuroattack.networks.models import network_from_dataset
from neuroattack.networks.readouts import infer

LAYER = "penultimate"
ALIVE_SPREAD = 1e-6  # a unit whose std over the stimuli is below this never varies


def extract_features(
    weights: xr.Dataset, stimuli: xr.Dataset, name: str, device: torch.device | None = None
) -> xr.Dataset:
    """`activation` (stimulus_id, unit) of network `name` on every stimulus."""
    device = device or torch.device("cpu")
    network = network_from_dataset(weights, name).to(device)
    values = infer(network.features, stimuli["pixels"].values, device)
    return xr.Dataset(
        {"activation": (("stimulus_id", "unit"), values)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "unit": np.arange(values.shape[1])},
        attrs={"network": name, "layer": str(getattr(network, "layer", LAYER))},
    )


def select_units(features: xr.Dataset, count: int, seed: int) -> np.ndarray:
    """`count` units (sorted indices) drawn by `seed` among those that vary over the stimuli.
    Prefix-stable: the units drawn for `count` are among those drawn for `count + 1`."""
    spread = features["activation"].std("stimulus_id").values
    alive = np.flatnonzero(spread > ALIVE_SPREAD)
    if len(alive) < count:
        raise ValueError(
            f"network {features.attrs.get('network')}: only {len(alive)} units vary; lower attack.units_per_network"
        )
    return np.sort(np.random.default_rng(seed).permutation(alive)[:count])
