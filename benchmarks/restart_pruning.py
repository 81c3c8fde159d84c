#!/usr/bin/env python
"""Restart pruning on trained networks: achieved change against gradient evaluations per
row, for R = 1..100 plain restarts and for successive halving (`attack.prune_every`,
`attack.prune_keep`) of 100 restarts.

R plain restarts are the first R of 100 single-restart runs with independent seeds (the
best quantised one per row counts, as in `pgd_attack`).
Prints per eps the mean achieved change (the larger direction, >= 0, as s~ counts it)
relative to 100 restarts, and writes the curve to `--figure`.

    python benchmarks/restart_pruning.py --results results
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_throughput import Job, achieved, build_job

from neuroattack import io
from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import AttackSettings
from neuroattack.data.stimuli import embedded_stimuli
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import extract_features, select_units
from neuroattack.networks.readouts import UnitResponse, to_tensor

CURVE = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)  # plain restart counts shown


def per_restart_changes(response: UnitResponse, job: Job, settings: AttackSettings, restarts: int, seed: int) -> Tensor:
    """(restarts, rows) signed objective direction * change of each restart alone, quantised."""
    single = replace(settings, restarts=1, prune_every=0)
    rows = []
    for k in range(restarts):  # independent starts; distributed as a run's restarts are
        result = pgd_attack(response, job.images, job.target, job.eps, job.direction, single, seed + 1000 * k)
        rows.append(job.direction * result.change)
    return torch.stack(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="a finished run's results folder (its networks/)")
    parser.add_argument("--networks", nargs="*", default=["standard", "robust_eps1"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--restarts", type=int, default=100)
    parser.add_argument(
        "--steps", type=int, default=32, help="steps per phase (the paper's schedule, as in config/paper.yaml)"
    )
    parser.add_argument("--schedule", default="paper")
    parser.add_argument("--wide-ball-factor", type=float, default=2.0)
    parser.add_argument("--prune", nargs="+", default=["4:0.5", "8:0.5", "4:0.25"], help="prune_every:prune_keep pairs")
    parser.add_argument("--figure", default=str(Path(__file__).resolve().parent / "restart_pruning.png"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = AttackSettings(
        steps=args.steps,
        restarts=args.restarts,
        schedule=args.schedule,
        wide_ball_factor=args.wide_ball_factor,
        chunk_rows=1024,
        precision="float32",
    )
    per_restart = settings.gradient_steps_per_restart()
    full = args.restarts * per_restart
    stimuli = embedded_stimuli(16, 32, args.seed)
    ids = stimuli["stimulus_id"].values[:: max(1, stimuli.sizes["stimulus_id"] // args.images)][: args.images]
    images = to_tensor(stimuli["pixels"].sel(stimulus_id=ids).values).contiguous()
    totals: dict[str, list[Tensor]] = {}  # run -> per network, achieved change (eps, unit, image)
    for name in args.networks:
        weights = io.read_dataset(Path(args.results) / "networks" / f"{name}.nc")
        network = network_from_dataset(weights, name)
        units = torch.as_tensor(select_units(extract_features(weights, stimuli, name), args.units, args.seed))
        job = build_job(images, units, args.eps)
        response = UnitResponse(network)
        singles = per_restart_changes(response, job, settings, args.restarts, args.seed)
        best_of = singles.cummax(dim=0).values  # (R, rows): best of the first R restarts
        for r in sorted({r for r in CURVE if r < args.restarts} | {args.restarts}):
            totals.setdefault(f"plain:{r}", []).append(achieved(job, job.direction * best_of[r - 1]))
        for pair in args.prune:
            every, keep = pair.split(":")
            pruned = replace(settings, prune_every=int(every), prune_keep=float(keep))
            result = pgd_attack(response, job.images, job.target, job.eps, job.direction, pruned, args.seed)
            totals.setdefault(f"prune:{pair}", []).append(achieved(job, result.change))
        print(f"{name}: {job.target.numel()} rows done", flush=True)
    reference = torch.cat([t.flatten(1) for t in totals[f"plain:{args.restarts}"]], dim=1).mean(1)  # per eps
    print(
        f"schedule {args.schedule}, {args.steps} steps per phase: {per_restart} gradient evaluations per restart; "
        f"{args.restarts} restarts = {full} per row; networks {', '.join(args.networks)}"
    )
    print(
        f"{'run':>16} {'evals/row':>10} {'of full':>8} "
        + "".join(f"{'eps ' + format(e, 'g'):>10}" for e in args.eps)
        + f"{'all':>10}"
    )
    points: dict[str, tuple[int, Tensor]] = {}
    for label, parts in totals.items():
        kind, value = label.split(":", 1)
        if kind == "plain":
            evaluations = int(value) * per_restart
        else:
            every, keep = value.split(":")
            evaluations = replace(settings, prune_every=int(every), prune_keep=float(keep)).passes_per_row()[1]
        means = torch.cat([t.flatten(1) for t in parts], dim=1).mean(1)
        ratio = means / reference
        overall = float(means.sum() / reference.sum())
        points[label] = (evaluations, torch.cat([ratio, torch.tensor([overall])]))
        name = f"R = {value}" if kind == "plain" else f"halving {value}"
        print(
            f"{name:>16} {evaluations:>10} {evaluations / full:>8.1%} "
            + "".join(f"{float(r):>10.4f}" for r in ratio)
            + f"{overall:>10.4f}"
        )
    figure(points, args.eps, full, args.figure)
    print(f"figure: {args.figure}")


def figure(points: dict[str, tuple[int, Tensor]], eps_grid: list[float], full: int, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    plain = sorted((e, r) for label, (e, r) in points.items() if label.startswith("plain"))
    for j, eps in enumerate(eps_grid):
        ax.plot(
            [e for e, _ in plain], [float(r[j]) for _, r in plain], marker=".", label=f"plain restarts, eps {eps:g}"
        )
    for label, (e, r) in points.items():
        if label.startswith("prune"):
            ax.scatter([e] * len(eps_grid), r[:-1].numpy(), marker="x", color="black")
            ax.annotate(
                label.split(":", 1)[1], (e, float(r[:-1].min())), fontsize=7, textcoords="offset points", xytext=(3, -9)
            )
    ax.axhline(0.995, color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.25 * full, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("gradient evaluations per row")
    ax.set_ylabel("mean achieved change / 100 restarts")
    ax.set_title("Restarts and successive halving (x: prune_every:prune_keep)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
