"""Rule site_models: linear readouts from the surrogate's features to every site."""

import numpy as np

from neuroattack import io
from neuroattack.brain import sitemodels
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
models = sitemodels.fit_to_recordings(
    io.read_dataset(snakemake.input.features, "features"),
    io.read_dataset(snakemake.input.recordings, "recordings"),
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    alphas=settings["alphas"],
    folds=settings["folds"],
    reliability_splits=settings["reliability_splits"],
    seed=snakemake.params.seed,
    sites=snakemake.params.sites,
    name=snakemake.input.recordings,
)
log.info(
    "median predictivity r = %.3f, median reliability = %.3f",
    float(np.nanmedian(models["predictivity"])),
    float(np.nanmedian(models["reliability"])),
)
write_output(models, snakemake.output[0], "site models", snakemake)
