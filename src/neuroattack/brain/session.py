"""A recording session of the simulated brain: clean images and groups of perturbed ones shown
together, each group's responses handed back in the group's own shape."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from neuroattack.brain.simulated import record
from neuroattack.data.recordings import repetition_tensor


def brain_session(
    brain: xr.Dataset,
    neuroids: np.ndarray,
    clean_pixels: np.ndarray,
    shown: Mapping[str, np.ndarray],
    repetitions: int,
    seed: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Record the clean images and every group of perturbed images (uint8, (..., y, x, channel))
    in one session: (image, repetition, site) for the clean ones, (..., repetition, site) per
    group; sites in the order of `neuroids`."""
    groups = {name: pixels.reshape(-1, *pixels.shape[-3:]) for name, pixels in shown.items()}
    pixels = np.concatenate([clean_pixels, *groups.values()])
    ids = [f"shown{i:06d}" for i in range(len(pixels))]
    recordings = record(brain, pixels, ids, repetitions, seed)
    tensor, order = repetition_tensor(recordings)
    position = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    tensor = tensor[np.argsort([int(sid.removeprefix("shown")) for sid in order])][
        :, :, [position[str(n)] for n in neuroids]
    ]
    start, recorded = len(clean_pixels), {}
    for name, group in groups.items():
        recorded[name] = tensor[start : start + len(group)].reshape(*shown[name].shape[:-3], *tensor.shape[1:])
        start += len(group)
    return tensor[: len(clean_pixels)], recorded
