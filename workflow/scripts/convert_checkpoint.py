"""Rule convert_checkpoint: a downloaded robust checkpoint -> netCDF weights."""

from neuroattack.runtime import configure, write_output
from neuroattack.sources import robust_checkpoint_to_weights

log = configure(snakemake.log[0], snakemake.threads)
weights = robust_checkpoint_to_weights(snakemake.input[0], attrs={"training_eps": snakemake.params.eps})
write_output(weights, snakemake.output[0], f"weights of network {snakemake.wildcards.network}", snakemake)
