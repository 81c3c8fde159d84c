"""Rule round_stimuli: the images one round shows (clean, perturbed, random directions)."""

from neuroattack import io
from neuroattack.loop.stimulus_set import round_stimulus_set
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
shown = round_stimulus_set(
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    [io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    int(snakemake.wildcards.round),
    snakemake.params.seed,
    snakemake.params.norm,
)
log.info("round %s shows %d images", snakemake.wildcards.round, shown.sizes["stimulus_id"])
write_output(shown, snakemake.output[0], f"images shown in round {snakemake.wildcards.round}", snakemake)
