#!/usr/bin/env python
"""Attack strength at equal gradient budget, on trained networks: ours (default and paper
schedules) against APGD-L2 and torchattacks' PGDL2, on the same rows, in one run.

Rows: n images x k eps x 2 directions x u penultimate units of each network of a finished
run (`results/networks/*.nc`, the networks `make run` trains). Every engine gets the same
number of gradient evaluations per row (restarts included). The references' final images
are rounded to 8 bits with `geometry.quantize` (nearest levels); both schedules of ours
take the better of that rounding and the rounding along the gradient, as the workflow does.
Each engine's restarts keep the best quantised result.
APGD also runs a second time with the next seed: its ratio to the first run is the spread
that random starts alone put on every ratio to APGD.
Per network and eps the table gives each engine's mean achieved change (the larger
direction, >= 0, as s~ counts it), its ratio to APGD, and the fraction of
(unit, image, eps) cells where ours (default) reaches at least each reference (1e-6 slack);
and per engine its throughput and ratio to PGDL2.

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

import torch
import yaml
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_throughput import Job, PlainUnit, achieved, build_job, run_torchattacks, torchattacks
from reference_attacks import apgd_change

from neuroattack import io
from neuroattack.attack import AttackSettings, pgd_attack
from neuroattack.features import extract_features, select_units
from neuroattack.models import network_from_dataset
from neuroattack.readouts import UnitResponse, to_tensor
from neuroattack.stimuli import embedded_stimuli

APGD_NEXT_SEED = "APGD-L2 (seed + 1)"
DEFAULT_ATTACK = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["attack"]


def engines(
    network: torch.nn.Module, job: Job, budget: int, restarts: int, chunk_rows: int, ours_restarts: int = 1
) -> dict[str, Callable[[int], Tensor]]:
    """Every engine, each spending `budget` gradient evaluations per row: ours (default) in
    `ours_restarts` restarts (the default config's one), the others in `restarts`."""
    response = UnitResponse(network)
    plain = PlainUnit(network)
    per_restart = budget // restarts
    default = AttackSettings.from_config(  # config/config.yaml's schedule, at this budget
        DEFAULT_ATTACK,
        steps=budget // ours_restarts - 1,
        restarts=ours_restarts,
        chunk_rows=chunk_rows,
        precision="float32",
    )
    paper = replace(
        default, schedule="paper", wide_ball_factor=2.0, steps=per_restart // 2 - 1, restarts=restarts, stall_steps=0
    )
    for settings in (default, paper):
        assert settings.restarts * settings.gradient_steps_per_restart() == budget, settings

    def ours(settings: AttackSettings) -> Callable[[int], Tensor]:
        return lambda seed: pgd_attack(response, job.images, job.target, job.eps, job.direction, settings, seed).change

    return {
        "ours (default)": ours(default),
        "ours (paper schedule)": ours(paper),
        "APGD-L2": lambda seed: apgd_change(
            response, job.images, job.target, job.eps, job.direction, budget, restarts, seed
        ),
        "torchattacks PGDL2": lambda seed: run_torchattacks(plain, job, per_restart, restarts, 2.5, chunk_rows, seed),
        # the reference against itself: how far a ratio to APGD moves with nothing but the random starts
        APGD_NEXT_SEED: lambda seed: apgd_change(
            response, job.images, job.target, job.eps, job.direction, budget, restarts, seed + 1
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="a finished run's results folder (its networks/)")
    parser.add_argument("--networks", nargs="*", default=None, help="network names (default: every one there)")
    parser.add_argument("--resolution", type=int, default=32, help="pixels per side (the run's stimuli.resolution)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--budget", type=int, default=36, help="gradient evaluations per row, restarts included")
    parser.add_argument("--restarts", type=int, default=2, help="restarts of the paper schedule, APGD and PGDL2")
    parser.add_argument("--ours-restarts", type=int, default=1, help="restarts of ours (default), as in config.yaml")
    parser.add_argument("--chunk-rows", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if torchattacks is None:
        sys.exit("torchattacks is not installed: pip install 'torchattacks>=3.5' (the 'bench' extra)")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.results) / "networks"
    names = args.networks or sorted(p.stem for p in folder.glob("*.nc") if p.stem != "brain")
    if not names:
        sys.exit(f"no networks in {folder}: run `make run` first, or pass --results <a run's results folder>")
    stimuli = embedded_stimuli(16, args.resolution, args.seed)
    ids = stimuli["stimulus_id"].values[:: max(1, stimuli.sizes["stimulus_id"] // args.images)][: args.images]
    images = to_tensor(stimuli["pixels"].sel(stimulus_id=ids).values).contiguous()  # PGDL2 needs NCHW
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; budget {args.budget} gradient evaluations")
    for name in names:
        weights = io.read_dataset(folder / f"{name}.nc")
        network = network_from_dataset(weights, name)
        units = torch.as_tensor(select_units(extract_features(weights, stimuli, name), args.units, args.seed))
        job = build_job(images, units, args.eps)
        print(f"\n== {name} (training eps {weights.attrs.get('training_eps')}): {job.target.numel()} rows")
        results: dict[str, Tensor] = {}
        seconds: dict[str, float] = {}
        for engine, run in engines(
            network, job, args.budget, args.restarts, args.chunk_rows, args.ours_restarts
        ).items():
            start = time.perf_counter()
            results[engine] = achieved(job, run(args.seed).detach().float())
            seconds[engine] = time.perf_counter() - start
        report(results, seconds, args.eps)


def report(results: dict[str, Tensor], seconds: dict[str, float], eps_grid: list[float]) -> None:
    """results: per engine, achieved change (eps, unit, image)."""
    ours, apgd = results["ours (default)"], results["APGD-L2"]
    print(f"{'eps':>6} " + "".join(f"{name:>24}" for name in results) + "   ours >= APGD   ours >= PGDL2")
    for e, eps in enumerate(eps_grid):
        means = "".join(
            f"{float(v[e].mean()):>15.5g} ({float(v[e].mean() / apgd[e].mean()):.4f})" for v in results.values()
        )
        wins = [float((ours[e] >= results[ref][e] - 1e-6).float().mean()) for ref in ("APGD-L2", "torchattacks PGDL2")]
        print(f"{eps:6.3g} {means}   {wins[0]:12.2f}   {wins[1]:13.2f}")
    pgd = seconds["torchattacks PGDL2"]
    print("seconds: " + ", ".join(f"{name} {s:.1f} ({pgd / s:.2f}x PGDL2)" for name, s in seconds.items()))


if __name__ == "__main__":
    main()
