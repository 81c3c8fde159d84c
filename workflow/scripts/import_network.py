"""Rule import_network: a user's model (torchvision, timm or a factory), with its weights file
if it has one -> netCDF weights."""

from neuroattack.networks.build import user_model_weights
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
name = snakemake.wildcards.network
weights_path = snakemake.input.get("weights")
weights = user_model_weights(name, snakemake.params.network, weights_path, snakemake.params.seed)
log.info("network %s: %s weights", name, weights.attrs["source_weights"])
write_output(weights, snakemake.output[0], f"weights of network {name}", snakemake)
