"""Rule export_rig_stimuli: the clean and perturbed images as a stimulus set for a rig."""
from neuroattack import io, pipeline, sources
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
shown = pipeline.perturbed_stimulus_set(
    io.read_dataset(snakemake.input.stimuli), [io.read_dataset(path) for path in snakemake.input.attacks]
)
csv_path, zip_path = snakemake.output
sources.write_stimulus_set(shown, csv_path, zip_path)
log.info("exported %d images for the rig", shown.sizes["stimulus_id"])
