"""Rule export_rig_stimuli: the clean and perturbed images as a stimulus set for a rig."""

from neuroattack import io, rig
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
csv_path, zip_path = snakemake.output
count = rig.export_for_rig(
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    [io.read_dataset(path, "attack") for path in snakemake.input.attacks],
    csv_path,
    zip_path,
)
log.info("exported %d images for the rig", count)
