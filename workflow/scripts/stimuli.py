"""Rule stimuli: embedded photographs -> labelled stimulus set."""
from neuroattack import io, pipeline
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
stimuli = pipeline.embedded_stimuli(settings["per_category"], settings["resolution"], snakemake.params.seed)
log.info("%d stimuli in %d categories", stimuli.sizes["stimulus_id"], len(set(stimuli["category"].values)))
io.write_dataset(stimuli, snakemake.output[0], "stimulus set", f"rule {snakemake.rule}", config=snakemake.config)
