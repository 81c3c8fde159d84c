"""Rule export_rig_stimuli: a round's images (clean, perturbed, random directions) as a stimulus set for a rig."""

from neuroattack import io
from neuroattack.data.stimuli import write_stimulus_set
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
shown = io.read_dataset(snakemake.input[0], "round_stimuli")
csv_path, zip_path = snakemake.output
write_stimulus_set(shown, csv_path, zip_path)
log.info("exported %d images of round %s for the rig", shown.sizes["stimulus_id"], snakemake.wildcards.round)
