"""How tight the black-box bound is, per finished in-silico run: the brain's black-box s~ over
its white-box truth per round and eps (Figure 6's numbers), whether the black box ever lies
above the truth beyond its 95% interval, the noise-free ratio beside it (the same perturbations
measured on the simulated brain's expected responses: Figure 8's `true_target_change`), and the
off-target specificity of the last round.

    .venv/bin/python benchmarks/loop_bound.py results/readout results/network ...

Each argument is a run's results folder (figures 6 and 8 made, `recordings.source: simulated`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr


def bound_table(folder: Path) -> list[str]:
    """One line per (round, eps): black box / white box, the noise-free ratio, and a flag where
    the black box's interval lies wholly above the truth."""
    loop = xr.open_dataset(folder / "figures/figure6.nc")
    specificity = xr.open_dataset(folder / "figures/figure8.nc")
    black, white = loop.sel(population="black_box"), loop.sel(population="white_box")
    lines = []
    for number in loop["round"].values:
        for eps in loop["eps"].values:
            b, w = black.sel(round=number, eps=eps), white.sel(round=number, eps=eps)
            noise_free = float(specificity["true_target_change"].sel(round=number, eps=eps, method="nearest"))
            above = float(b["ci_low"]) > float(w["s_tilde"])
            lines.append(
                f"{folder.name:>12} round {int(number)} eps {float(eps):<4g} "
                f"black {float(b['s_tilde']):.3f} [{float(b['ci_low']):.3f}, {float(b['ci_high']):.3f}] "
                f"white {float(w['s_tilde']):.3f}  ratio {float(b['s_tilde']) / float(w['s_tilde']):.2f}  "
                f"noise-free ratio {noise_free / float(w['s_tilde']):.2f}" + ("  ABOVE THE TRUTH" if above else "")
            )
    last = specificity.sel(round=int(specificity["round"].max()))
    for eps in last["eps"].values:
        at = last.sel(eps=eps)
        lines.append(
            f"{folder.name:>12} specificity eps {float(eps):<4g} target {float(at['target_change']):.3f} "
            f"off-target {float(at['offtarget_change']):.3f} (median {float(at['median_offtarget_change']):.3f}) "
            f"ratio {float(at['specificity']):.2f} [{float(at['specificity_low']):.2f}, "
            f"{float(at['specificity_high']):.2f}]; truth {float(at['true_target_change']):.3f} / "
            f"{float(at['true_offtarget_change']):.3f} = {float(at['true_specificity']):.2f}; "
            f"random {float(at['random_change']):.3f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="results folders of finished in-silico runs")
    args = parser.parse_args()
    for folder in args.runs:
        print("\n".join(bound_table(folder)))
    last_ratios = []
    for folder in args.runs:
        loop = xr.open_dataset(folder / "figures/figure6.nc")
        last = loop.sel(round=int(loop["round"].max()))
        ratio = last["s_tilde"].sel(population="black_box") / last["s_tilde"].sel(population="white_box")
        large = ratio.sel(eps=ratio["eps"] >= 1.0)
        last_ratios.append(f"{folder}: last round, eps >= 1: " + ", ".join(f"{v:.2f}" for v in large.values))
        if np.any(large.values < 0.85):
            last_ratios[-1] += "  (below 0.85)"
    print("\n".join(last_ratios))


if __name__ == "__main__":
    main()
