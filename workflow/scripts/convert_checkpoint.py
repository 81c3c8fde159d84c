"""Rule convert_checkpoint: a downloaded robust checkpoint -> netCDF weights."""

from neuroattack.networks.checkpoints import weights_from_checkpoint
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
name = snakemake.wildcards.network
weights = weights_from_checkpoint(snakemake.input[0], name, snakemake.params.network)
write_output(weights, snakemake.output[0], f"weights of network {name}", snakemake)
