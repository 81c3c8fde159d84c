"""Rule ingest_perturbed_recordings: a rig's recordings of the exported set -> responses."""

from neuroattack import io, rig
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
responses = rig.ingest_rig_recordings(
    snakemake.input.table, [io.read_dataset(path, "attack") for path in snakemake.input.attacks]
)
write_output(responses, snakemake.output[0], "responses to perturbed images", snakemake)
