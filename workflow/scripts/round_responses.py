"""Rule round_responses: one round's recordings matched back to its attacks and random directions."""

from neuroattack import io
from neuroattack.loop.responses import round_responses
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
responses = round_responses(
    io.read_dataset(snakemake.input.round_stimuli, "round_stimuli"),
    io.read_dataset(snakemake.input.recordings, "recordings"),
    [io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    brain=io.read_dataset(snakemake.input.brain, "brain") if "brain" in set(snakemake.input.keys()) else None,
)
write_output(responses, snakemake.output[0], f"responses of round {snakemake.wildcards.round}", snakemake)
