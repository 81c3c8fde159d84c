"""Rule import_recordings: a Brain-Score assembly or a lab's table -> recordings."""

from neuroattack import io, sources
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
if settings["source"] == "brainscore":
    assembly = io.read_dataset(snakemake.input.assembly)
    recordings = sources.brainscore_assembly_to_recordings(assembly, settings["region"])
else:
    recordings = sources.table_to_recordings(snakemake.input.table)
log.info("%d presentations of %d neuroids", recordings.sizes["presentation"], recordings.sizes["neuroid"])
io.write_dataset(
    recordings,
    snakemake.output[0],
    "recordings of clean stimuli",
    f"rule {snakemake.rule}",
    snakemake.input,
    snakemake.config,
)
