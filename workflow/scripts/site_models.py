"""Rule site_models: linear readouts from the surrogate's features to every site."""
import numpy as np

from neuroattack import io, pipeline
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
models = pipeline.site_models(
    io.read_dataset(snakemake.input.features),
    io.read_dataset(snakemake.input.recordings),
    io.read_dataset(snakemake.input.stimuli),
    snakemake.params.settings,
    snakemake.params.seed,
    snakemake.params.sites,
)
log.info(
    "median predictivity r = %.3f, median reliability = %.3f",
    float(np.nanmedian(models["predictivity"])), float(np.nanmedian(models["reliability"])),
)
io.write_dataset(models, snakemake.output[0], "site models", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
