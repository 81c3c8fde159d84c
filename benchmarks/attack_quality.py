#!/usr/bin/env python
"""Attack strength at equal gradient budget, on trained networks: ours (default and paper
schedules) against APGD-L2 and torchattacks' PGDL2, on the same rows, in one run.

Rows: n images x k eps x 2 directions x u penultimate units of each network of a finished
run (`results/networks/*.nc`, the networks `make run` trains). By default they are
held-out rows (`--rows held-out`): images and units disjoint from the rows the default
schedule was tuned on (`--rows tuning`: the images ids[::N // k] for k = 6 and 8 of the
embedded set and the first 8 units of seed 0's draw, which this script used by default
before).

Every engine gets the same number of gradient evaluations per row (restarts included)
and the same final step: each restart's best point (PGDL2: its last iterate) is shown as
the better of its nearest 8-bit rounding and its rounding along the gradient there
(`attack.shown_image`, as the workflow does; PGDL2 pays one gradient evaluation more, at
its last iterate, that its budget does not count), and each engine's restarts keep the
best shown result. Each reference runs at 1 x B and 2 x B/2 (restarts x evaluations)
and, per network and eps, keeps its better allocation (the table says which won); ours
(default) runs the default config's 1 x B. APGD also runs a second time with the next
seed (same choice of allocation): its ratio to the first run is the spread that random
starts alone put on every ratio to APGD.

Per network and eps the table gives each engine's mean achieved change (the larger
direction, >= 0, as s~ counts it) at its best allocation, its ratio to APGD, and the
fraction of (unit, image) cells where ours (default) reaches at least each reference
(1e-6 slack).

    python benchmarks/attack_quality.py --results results                 # default budget
    python benchmarks/attack_quality.py --results results --budget 132    # the paper's (2 x (32 + 1) x 2)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import yaml
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_throughput import Job, PlainUnit, SignedUnitChange, achieved, build_job, torchattacks
from reference_attacks import apgd_change, best_of_restarts, objective_and_gradient

from neuroattack import io
from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import AttackSettings
from neuroattack.data.stimuli import embedded_stimuli
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import extract_features, select_units
from neuroattack.networks.readouts import UnitResponse, to_tensor

APGD, PGDL2, APGD_NEXT_SEED = "APGD-L2", "torchattacks PGDL2", "APGD-L2 (seed + 1)"
OURS, PAPER = "ours (default)", "ours (paper schedule)"
DEFAULT_ATTACK = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["attack"]
TUNING_IMAGE_COUNTS = (6, 8)  # the image counts the default schedule was tuned with (stride N // k from id 0)
TUNING_UNITS = 8  # and the first units of seed 0's draw
Engine = Callable[[int], Tensor]  # seed -> change per row


def allocations(budget: int) -> list[int]:
    """Restart counts that split `budget` gradient evaluations evenly: 1 x B and 2 x B/2."""
    return [r for r in (1, 2) if budget % r == 0 and budget // r >= 4]


def last_iterates(
    attack: Any, response: UnitResponse, images: Tensor, labels: Tensor, target: Tensor, clean: Tensor, sign: Tensor
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """One torchattacks run per call: its last iterate and the objective's gradient there."""

    def run(_: int) -> tuple[Tensor, Tensor]:
        delta = attack(images, labels) - images
        _, gradient = objective_and_gradient(response, images, delta, target, clean, sign, False)
        return delta, gradient

    return run


def pgdl2_change(response: UnitResponse, plain: PlainUnit, job: Job, steps: int, restarts: int, seed: int) -> Tensor:
    """torchattacks' PGDL2 (alpha = 2.5 eps / steps, random start) per eps, `restarts` runs,
    each last iterate shown by `attack.shown_image`. Returns the change per row."""
    torch.manual_seed(seed)  # PGDL2 draws its random start from the global generator
    model = SignedUnitChange(plain).eval()  # eval(): torchattacks restores the mode it found
    change = torch.empty_like(job.eps)
    for eps in job.eps_grid:
        attack = torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
        index = torch.nonzero(job.eps == eps).squeeze(1)
        images, target, sign, radius = job.images[index], job.target[index], job.direction[index], job.eps[index]
        with torch.no_grad():
            clean = plain(images, target)
        model.bind(target, sign, clean)
        labels = torch.ones_like(target)

        run = last_iterates(attack, response, images, labels, target, clean, sign)
        change[index] = best_of_restarts(response, images, target, radius, sign, restarts, run)
    return change


def engines(network: torch.nn.Module, job: Job, budget: int, chunk_rows: int) -> dict[str, dict[int, Engine]]:
    """Per engine and restart count, a run that spends `budget` gradient evaluations per row."""
    response = UnitResponse(network)
    plain = PlainUnit(network)
    default = AttackSettings.from_config(  # config/config.yaml's schedule and allocation, at this budget
        DEFAULT_ATTACK,
        steps=budget // DEFAULT_ATTACK["restarts"] - 1,
        chunk_rows=chunk_rows,
        precision="float32",
    )
    assert default.restarts * default.gradient_steps_per_restart() == budget, default

    def ours(settings: AttackSettings) -> Engine:
        return lambda seed: pgd_attack(response, job.images, job.target, job.eps, job.direction, settings, seed).change

    def paper(restarts: int) -> Engine:
        settings = replace(
            default,
            schedule="paper",
            wide_ball_factor=2.0,
            steps=budget // restarts // 2 - 1,
            restarts=restarts,
            stall_steps=0,
        )
        assert settings.restarts * settings.gradient_steps_per_restart() == budget, settings
        return ours(settings)

    def apgd(restarts: int, offset: int) -> Engine:
        return lambda seed: apgd_change(
            response, job.images, job.target, job.eps, job.direction, budget, restarts, seed + offset
        )

    def pgdl2(restarts: int) -> Engine:
        return lambda seed: pgdl2_change(response, plain, job, budget // restarts, restarts, seed)

    split = allocations(budget)
    return {
        OURS: {default.restarts: ours(default)},
        PAPER: {r: paper(r) for r in split},
        APGD: {r: apgd(r, 0) for r in split},
        PGDL2: {r: pgdl2(r) for r in split},
        # the reference against itself: how far a ratio to APGD moves with nothing but the random starts
        APGD_NEXT_SEED: {r: apgd(r, 1) for r in split},
    }


def pick_rows(
    stimuli: xr.Dataset, features: xr.Dataset, images: int, units: int, rows: str
) -> tuple[list[str], np.ndarray]:
    """The reported rows' stimulus ids and units: the tuning rows, or rows disjoint from them."""
    ids = list(stimuli["stimulus_id"].values)
    if rows == "tuning":
        return ids[:: max(1, len(ids) // images)][:images], select_units(features, units, 0)
    tuned = {i for k in TUNING_IMAGE_COUNTS for i in ids[:: max(1, len(ids) // k)][:k]}
    held_out = [i for i in ids if i not in tuned]
    chosen = held_out[len(held_out) // (2 * images) :: max(1, len(held_out) // images)][:images]
    drawn = select_units(features, TUNING_UNITS + units, 0)  # prefix-stable: the first 8 are the tuning units
    tuned_units = set(select_units(features, TUNING_UNITS, 0).tolist())
    return chosen, np.array([u for u in drawn if u not in tuned_units][:units])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="a finished run's results folder (its networks/)")
    parser.add_argument("--networks", nargs="*", default=None, help="network names (default: every one there)")
    parser.add_argument("--resolution", type=int, default=32, help="pixels per side (the run's stimuli.resolution)")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--units", type=int, default=6)
    parser.add_argument("--rows", choices=["held-out", "tuning"], default="held-out")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--budget", type=int, default=36, help="gradient evaluations per row, restarts included")
    parser.add_argument("--chunk-rows", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if torchattacks is None:
        sys.exit("torchattacks is not installed: run `make bench` (the 'bench' extra, with the pinned requests)")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.results) / "networks"
    names = args.networks or sorted(p.stem for p in folder.glob("*.nc") if p.stem != "brain")
    if not names:
        sys.exit(f"no networks in {folder}: run `make run` first, or pass --results <a run's results folder>")
    stimuli = embedded_stimuli(16, args.resolution, 0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; budget {args.budget} gradient evaluations")
    for name in names:
        weights = io.read_dataset(folder / f"{name}.nc")
        network = network_from_dataset(weights, name)
        ids, units = pick_rows(stimuli, extract_features(weights, stimuli, name), args.images, args.units, args.rows)
        images = to_tensor(stimuli["pixels"].sel(stimulus_id=ids).values).contiguous()  # PGDL2 needs NCHW
        job = build_job(images, torch.as_tensor(units), args.eps)
        print(
            f"\n== {name} (training eps {weights.attrs.get('training_eps')}): {job.target.numel()} rows, "
            f"{args.rows} images {ids[0]}..{ids[-1]}, units {units.tolist()}"
        )
        results: dict[str, dict[int, Tensor]] = {}
        seconds: dict[str, float] = {}
        for engine, runs in engines(network, job, args.budget, args.chunk_rows).items():
            start = time.perf_counter()
            results[engine] = {r: achieved(job, run(args.seed).detach().float()) for r, run in runs.items()}
            seconds[engine] = time.perf_counter() - start
        report(results, seconds, args.eps, args.budget)


def best_allocation(runs: dict[int, Tensor], e: int) -> int:
    """The restart count whose mean achieved change at eps index `e` is largest."""
    return max(runs, key=lambda r: float(runs[r][e].mean()))


def label(runs: dict[int, Tensor], e: int, budget: int) -> str:
    """The winning allocation at eps index `e` as restarts x evaluations, e.g. `1x36`."""
    restarts = best_allocation(runs, e)
    return f"{restarts}x{budget // restarts}"


def report(
    results: dict[str, dict[int, Tensor]], seconds: dict[str, float], eps_grid: list[float], budget: int
) -> None:
    """results: per engine and restart count, achieved change (eps, unit, image)."""
    print(f"{'eps':>6} " + "".join(f"{name:>30}" for name in results) + "   ours >= APGD   ours >= PGDL2")
    for e, eps in enumerate(eps_grid):
        best = {name: runs[best_allocation(runs, e)][e] for name, runs in results.items()}
        if APGD_NEXT_SEED in results:  # the same allocation as the first APGD run, so only the seed differs
            best[APGD_NEXT_SEED] = results[APGD_NEXT_SEED][best_allocation(results[APGD], e)][e]
        apgd = best[APGD].mean()
        cells = "".join(
            f"{float(v.mean()):>12.5g} ({float(v.mean() / apgd):.4f}, {label(results[name], e, budget)})"
            for name, v in best.items()
        )
        wins = [float((best[OURS] >= best[ref] - 1e-6).float().mean()) for ref in (APGD, PGDL2)]
        print(f"{eps:6.3g} {cells}   {wins[0]:12.2f}   {wins[1]:13.2f}")
    pgd = seconds[PGDL2]
    print(
        "seconds (all allocations): "
        + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())
        + f" (PGDL2 {pgd:.1f})"
    )


if __name__ == "__main__":
    main()
