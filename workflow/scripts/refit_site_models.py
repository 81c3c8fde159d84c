"""Rules refit_site_models and ensemble_site_models: a network's site models for a round."""

import numpy as np

from neuroattack import io, refit
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
rounds = range(1, int(snakemake.wildcards.round))
models = refit.refit_site_models(
    first_models=io.read_dataset(snakemake.input.first, "site_models"),
    surrogate=io.read_dataset(snakemake.input.surrogate, "weights"),
    features=io.read_dataset(snakemake.input.features, "features"),
    clean_recordings=io.read_dataset(snakemake.input.recordings, "recordings"),
    stimuli=io.read_dataset(snakemake.input.stimuli, "stimuli"),
    earlier=[
        (
            io.read_dataset(snakemake.input[f"shown_{number}"], "round_stimuli"),
            io.read_dataset(snakemake.input[f"recordings_{number}"], "recordings"),
        )
        for number in rounds
    ],
    alphas=settings["alphas"],
    folds=settings["folds"],
    reliability_splits=settings["reliability_splits"],
    seed=snakemake.params.seed,
    device=device(),
)
log.info("median predictivity r = %.3f after %d round(s)", float(np.nanmedian(models["predictivity"])), len(rounds))
write_output(models, snakemake.output[0], f"site models of round {snakemake.wildcards.round}", snakemake)
