"""Rule record: show one session's stimulus set (the clean one, or a round's) to the simulated brain."""

from neuroattack import io
from neuroattack.brain import simulated
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
session = snakemake.wildcards.session
shown = io.read_dataset(snakemake.input.shown, "stimuli")
recordings = simulated.record(
    io.read_dataset(snakemake.input.brain, "brain"),
    shown["pixels"].values,
    shown["stimulus_id"].values.tolist(),
    snakemake.params.repetitions,
    snakemake.params.seed,
)
log.info(
    "recorded %d presentations from %d sites (%s)", recordings.sizes["presentation"], recordings.sizes["site"], session
)
write_output(recordings, snakemake.output[0], f"recordings of the {session} stimulus set", snakemake)
