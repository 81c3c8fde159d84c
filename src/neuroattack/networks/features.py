"""A network's features at its layer on the stimulus set, and the units sampled from them."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from neuroattack.config import PENULTIMATE, split_view
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.readouts import infer

ALIVE_SPREAD = 1e-6  # a unit whose std over the stimuli is below this never varies


def extract_features(
    weights: xr.Dataset,
    stimuli: xr.Dataset,
    name: str,
    device: torch.device | None = None,
    layer: str = PENULTIMATE,
) -> xr.Dataset:
    """`activation` (stimulus_id, unit) of network `name` (or a depth view of it,
    "<network>@<layer>") at `layer` on every stimulus; the
    layer is kept in attrs, and every job that rebuilds the network from these features
    (units, site models) sees it there."""
    device = device or torch.device("cpu")
    network_name, view_layer = split_view(name)
    try:
        network = network_from_dataset(weights, network_name, layer).to(device)
    except ValueError as error:
        key = f"networks.{name}.layer" if view_layer is None else f"attack.layers (of network {network_name})"
        raise ValueError(f"{key}: {error}") from error
    values = infer(network.features, stimuli["pixels"].values, device)
    return xr.Dataset(
        {"activation": (("stimulus_id", "unit"), values)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "unit": np.arange(values.shape[1])},
        attrs={"network": network_name, "layer": layer},
    )


def features_layer(features: xr.Dataset) -> str:
    """The layer a features file was made at (files from before layers were named: the penultimate)."""
    return str(features.attrs.get("layer", PENULTIMATE))


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
