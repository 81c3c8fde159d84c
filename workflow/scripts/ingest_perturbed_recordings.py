"""Rule ingest_perturbed_recordings: a rig's recordings of one round's stimulus set."""

from neuroattack import io
from neuroattack.data.recording_sources import table_to_recordings
from neuroattack.loop.rig import check_round_recordings
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
recordings = check_round_recordings(
    table_to_recordings(snakemake.input.table),
    io.read_dataset(snakemake.input.round_stimuli, "round_stimuli"),
    io.read_dataset(snakemake.input.clean, "recordings"),
    io.read_dataset(snakemake.input.site_models, "site_models")["neuroid_id"].values.astype(str).tolist(),
    snakemake.input.table,
)
write_output(recordings, snakemake.output[0], f"recordings of round {snakemake.wildcards.round}", snakemake)
