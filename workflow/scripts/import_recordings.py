"""Rule import_recordings: a Brain-Score assembly or a lab's table -> recordings."""

from neuroattack.data.recording_sources import recordings_from_source
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
recordings = recordings_from_source(snakemake.params.settings, dict(snakemake.input.items()))
log.info("%d presentations of %d sites", recordings.sizes["presentation"], recordings.sizes["site"])
write_output(recordings, snakemake.output[0], "recordings of clean stimuli", snakemake)
