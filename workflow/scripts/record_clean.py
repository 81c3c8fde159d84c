"""Rule record_clean: show every clean stimulus to the brain."""

from neuroattack import io
from neuroattack.brain import simulated
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
recordings = simulated.record(
    io.read_dataset(snakemake.input.brain, "brain"),
    stimuli["pixels"].values,
    stimuli["stimulus_id"].values.tolist(),
    snakemake.params.repetitions,
    snakemake.params.seed,
)
log.info("recorded %d presentations from %d sites", recordings.sizes["presentation"], recordings.sizes["site"])
write_output(recordings, snakemake.output[0], "recordings of clean stimuli", snakemake)
