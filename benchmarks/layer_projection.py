#!/usr/bin/env python
"""Site models on a wide layer: fitted on every feature, or on a projection (PCA, or a seeded
Gaussian random projection) to `--dims` features. Which predicts the recorded sites better?

Reads a finished run: its clean recordings, stimuli and the features files given (for
example the depth views `features/<network>@<layer>.nc` of a run with `attack.layers`), and
fits the site models of `brain.sitemodels.fit_to_recordings` with each reduction, forced on
whatever the layer's width. Prints, per features file, the median over sites of the
cross-validated predictivity (Pearson r) and the fit's wall time.

    python benchmarks/layer_projection.py results/features/standard@stages.0.nc \\
        --recordings results/recordings/clean.nc --stimuli results/stimuli/stimuli.nc --dims 100 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroattack import io
from neuroattack.brain.sitemodels import Reduction, fit_to_recordings

NEVER = 10**12  # a width no layer reaches: no projection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("features", nargs="+", help="features files of a finished run")
    parser.add_argument("--recordings", required=True)
    parser.add_argument("--stimuli", required=True)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config" / "config.yaml"))
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 300])
    args = parser.parse_args(argv)
    surrogate = yaml.safe_load(Path(args.config).read_text())["surrogate"]
    recordings = io.read_dataset(args.recordings, "recordings")
    stimuli = io.read_dataset(args.stimuli, "stimuli")
    fits = [("every feature", Reduction(above=NEVER))]
    fits += [
        (f"{kind} to {dims}", Reduction(kind, above=0, dims=dims)) for dims in args.dims for kind in ("pca", "random")
    ]
    print(f"{'features file':<28} {'width':>7} {'site models':<16} {'median r':>9} {'fit s':>7}")
    for path in args.features:
        features = io.read_dataset(path, "features")
        for label, reduction in fits:
            start = time.perf_counter()
            models = fit_to_recordings(
                features,
                recordings,
                stimuli,
                surrogate["alphas"],
                int(surrogate["folds"]),
                int(surrogate["reliability_splits"]),
                seed=0,
                reduction=reduction,
            )
            seconds = time.perf_counter() - start
            median = float(np.median(models["predictivity"].values))
            print(f"{Path(path).stem:<28} {features.sizes['unit']:>7} {label:<16} {median:>9.3f} {seconds:>7.1f}")


if __name__ == "__main__":
    main()
