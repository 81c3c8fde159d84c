"""Rules refit_site_models and ensemble_site_models: a round's site models of each surrogate
network (the surrogate, or every ensemble member), refitted on every recording before the round."""

import numpy as np

from neuroattack import io
from neuroattack.loop import refit
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
rounds = range(1, int(snakemake.wildcards.round))
first_models = io.read_dataset(snakemake.input.first, "site_models")
clean_recordings = io.read_dataset(snakemake.input.recordings, "recordings")
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
earlier = [
    (
        io.read_dataset(snakemake.input[f"round_stimuli_{number}"], "round_stimuli"),
        io.read_dataset(snakemake.input[f"recordings_{number}"], "recordings"),
    )
    for number in rounds
]
members = zip(snakemake.input.members, snakemake.input.features, snakemake.output, strict=True)
for surrogate, features, output in members:
    models = refit.refit_site_models(
        first_models=first_models,
        surrogate=io.read_dataset(surrogate, "network"),
        features=io.read_dataset(features, "features"),
        clean_recordings=clean_recordings,
        stimuli=stimuli,
        earlier=earlier,
        alphas=settings["alphas"],
        folds=settings["folds"],
        reliability_splits=settings["reliability_splits"],
        seed=snakemake.params.seed,
        device=device(),
    )
    network = models.attrs.get("surrogate_network", "surrogate")
    log.info(
        "%s: median predictivity r = %.3f after %d round(s)",
        network,
        float(np.nanmedian(models["predictivity"])),
        len(rounds),
    )
    write_output(models, output, f"site models of round {snakemake.wildcards.round}", snakemake)
