"""Rule record_attacks: show clean and perturbed images to the brain; keep predictions beside."""

from neuroattack import io, rig
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
responses = rig.record_in_silico(
    io.read_dataset(snakemake.input.brain, "brain"),
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    [io.read_dataset(path, "attack") for path in snakemake.input.attacks],
    snakemake.params.repetitions,
    snakemake.params.seed,
)
write_output(responses, snakemake.output[0], "responses to perturbed images", snakemake)
