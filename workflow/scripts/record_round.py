"""Rule record_round: show one round's images to the simulated brain."""

from neuroattack import io
from neuroattack.brain import simulated
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
shown = io.read_dataset(snakemake.input.shown, "round_stimuli")
recordings = simulated.record(
    io.read_dataset(snakemake.input.brain, "brain"),
    shown["pixels"].values,
    shown["stimulus_id"].values.tolist(),
    snakemake.params.repetitions,
    snakemake.params.seed,
)
log.info("recorded %d presentations of round %s", recordings.sizes["presentation"], snakemake.wildcards.round)
write_output(recordings, snakemake.output[0], f"recordings of round {snakemake.wildcards.round}", snakemake)
