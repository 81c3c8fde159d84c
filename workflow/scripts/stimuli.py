"""Rule stimuli: the stimulus set, from the embedded photographs, a Brain-Score set or a folder."""
from neuroattack import io, pipeline, sources
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
if settings["source"] == "embedded":
    stimuli = pipeline.embedded_stimuli(settings["per_category"], settings["resolution"], snakemake.params.seed)
elif settings["source"] == "brainscore":
    stimuli = sources.brainscore_stimuli_to_dataset(snakemake.input.csv, snakemake.input.zip, settings["resolution"])
else:
    stimuli = sources.image_folder_to_stimuli(snakemake.input.folder, settings["resolution"])
log.info("%d stimuli in %d categories", stimuli.sizes["stimulus_id"], len(set(stimuli["category"].values)))
io.write_dataset(stimuli, snakemake.output[0], "stimulus set", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
