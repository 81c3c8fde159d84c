"""Rule export_screening_stimuli: the transfer test's images as a stimulus set for a recording rig."""

from neuroattack import io
from neuroattack.analysis import transfer
from neuroattack.data.stimuli import write_stimulus_set
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
shown = transfer.layer_stimulus_set(
    io.read_dataset(snakemake.input.screening, "screening"), io.read_dataset(snakemake.input.stimuli, "stimuli")
)
csv, archive = snakemake.output
write_stimulus_set(shown, csv, archive)
log.info("wrote %d images for the rig: %s, %s", shown.sizes["stimulus_id"], csv, archive)
