#!/usr/bin/env python
"""How well each round's attack direction points where the simulated brain moves, per
finished in-silico run: for every later round, site and attacked clean image, the cosine
with the brain's true input gradient (its noise-free expected response, autograd) of

- the site model's own gradient (the round's ensemble site models: what a round attacks
  without `loop.recorded_gradient`),
- the ridge estimate from the changes the earlier rounds recorded (`loop.recorded_gradient`'s
  eps and ridge), and
- the direction a refined round attacks at the clean image: the site model's unit gradient
  plus `weight` times the estimate's.

Medians over (site, image), by round. With `--weight`, `--eps` and `--ridge` other settings
than the run's are scored on the same recordings.

    .venv/bin/python benchmarks/recorded_gradient.py results [--weight 2 --eps 1 --ridge 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroattack import io
from neuroattack.brain.simulated import expected_responses
from neuroattack.brain.sitemodels import ensemble_response
from neuroattack.loop.recorded_gradient import recorded_changes, ridge_gradient, round_means, site_gradients
from neuroattack.networks.readouts import to_tensor


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (n, P) arrays."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def round_response(folder: Path, number: int) -> torch.nn.Module:
    """Round `number`'s attacked response: the mean of its ensemble members' site models."""
    models = sorted((folder / f"rounds/round{number}/ensemble").glob("*.nc"))
    if not models:  # no ensemble: the surrogate's own site models, which name their network
        fitted = io.read_dataset(folder / f"rounds/round{number}/site_models.nc", "site_models")
        network = folder / "networks" / f"{fitted.attrs['surrogate_network']}.nc"
        return ensemble_response([io.read_dataset(network, "network")], [fitted])
    networks = [io.read_dataset(folder / "networks" / path.name, "network") for path in models]
    return ensemble_response(networks, [io.read_dataset(path, "site_models") for path in models])


def score(folder: Path, weight: float, eps: float, ridge: float) -> None:
    brain_ds = io.read_dataset(folder / "brain/brain.nc", "brain")
    brain = expected_responses(brain_ds)
    stimuli = io.read_dataset(folder / "stimuli/stimuli.nc", "stimuli")
    first = xr.open_dataset(folder / "rounds/round1/stimuli.nc")
    images = first["stimulus_id"].values[first["category"].values == "clean"].astype(str).tolist()
    rounds = sorted(int(p.name.removeprefix("round")) for p in (folder / "rounds").glob("round*"))
    print(f"{folder}: {len(images)} images; weight {weight}, eps {eps}, ridge {ridge} (x eps^2)")
    print(f"{'round':>5} {'site model':>10} {'estimate':>9} {'refined':>8}  (median cosine with the true gradient)")
    for number in rounds[1:]:
        earlier = round_means(
            [
                (
                    io.read_dataset(folder / f"rounds/round{r}/stimuli.nc", "round_stimuli"),
                    io.read_dataset(folder / f"recordings/round{r}.nc", "recordings"),
                )
                for r in range(1, number)
            ]
        )
        response = round_response(folder, number)
        first_models = io.read_dataset(folder / "rounds/round1/site_models.nc", "site_models")
        sites = first_models["neuroid_id"].values.astype(str).tolist()
        in_brain = [brain_ds["neuroid_id"].values.astype(str).tolist().index(site) for site in sites]
        found: dict[str, list[np.ndarray]] = {"site model": [], "estimate": [], "refined": []}
        for stimulus_id in images:
            image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values)
            truth = site_gradients(brain, image, brain_ds.sizes["site"])[in_brain]
            own = site_gradients(response, image, len(sites))
            recorded = recorded_changes(earlier, stimulus_id, sites, eps)
            if not len(recorded.directions):
                sys.exit(
                    f"{folder}: no image of rounds < {number} perturbs {stimulus_id} at eps {eps}; use an attack.eps"
                )
            estimate = ridge_gradient(recorded.directions, recorded.changes, ridge * eps**2)
            unit = estimate / np.maximum(np.linalg.norm(estimate, axis=1, keepdims=True), 1e-300)
            refined = own / np.linalg.norm(own, axis=1, keepdims=True) + weight * unit
            for name, direction in (("site model", own), ("estimate", estimate), ("refined", refined)):
                found[name].append(cosines(direction, truth))
        medians = {name: float(np.median(np.concatenate(values))) for name, values in found.items()}
        print(f"{number:5d} {medians['site model']:10.3f} {medians['estimate']:9.3f} {medians['refined']:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="finished in-silico runs' results folders")
    parser.add_argument("--weight", type=float, default=2.0)
    parser.add_argument("--eps", type=float, default=1.0)
    parser.add_argument("--ridge", type=float, default=100.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.results:
        score(folder, args.weight, args.eps, args.ridge)


if __name__ == "__main__":
    main()
