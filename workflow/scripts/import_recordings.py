"""Rule import_recordings: a Brain-Score assembly or a lab's table -> recordings, checked
against the stimulus set."""

from neuroattack import io
from neuroattack.data.recording_sources import recordings_from_source, unrecorded_stimuli
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
source = snakemake.input.get("table", snakemake.input.get("assembly"))
recordings = recordings_from_source(snakemake.params.settings, dict(snakemake.input.items()))
unrecorded = unrecorded_stimuli(recordings, io.read_dataset(snakemake.input.stimuli, "stimuli"), source)
log.info("%d presentations of %d sites", recordings.sizes["presentation"], recordings.sizes["site"])
if unrecorded:
    log.info(
        "%d stimuli have no recordings (not used where recordings are needed), e.g. %s", len(unrecorded), unrecorded[:3]
    )
write_output(recordings, snakemake.output[0], "recordings of clean stimuli", snakemake)
