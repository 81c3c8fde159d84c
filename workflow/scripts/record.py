"""Rule record: show one stimulus set (the clean one, or a round's) to the simulated brain."""

from neuroattack import io
from neuroattack.brain import simulated
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
stimulus_set = snakemake.wildcards.stimulus_set
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
brain = io.read_dataset(snakemake.input.brain, "brain")
recordings = simulated.record(
    brain,
    stimuli["pixels"].values,
    stimuli["stimulus_id"].values.tolist(),
    snakemake.params.repetitions or int(brain.attrs["repetitions"]),  # beside real recordings: theirs
    snakemake.params.seed,
)
log.info("recorded %d presentations of the %s stimulus set", recordings.sizes["presentation"], stimulus_set)
write_output(recordings, snakemake.output[0], f"recordings of the {stimulus_set} stimulus set", snakemake)
