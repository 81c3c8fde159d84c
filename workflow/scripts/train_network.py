"""Rule train_network: train one ResNet (standard, or PGD-L2 adversarial when eps > 0)."""

from neuroattack import io
from neuroattack.networks import training
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
network = snakemake.wildcards.network
data = training.labelled_from_dataset(io.read_dataset(snakemake.input.training_data, "training_data"))
weights = training.train_from_config(snakemake.params.spec, snakemake.params.training, data, device())
log.info(
    "%s: clean accuracy %.3f, robust accuracy %.3f at eps %.2f",
    network,
    weights.attrs["clean_accuracy"],
    weights.attrs["robust_accuracy"],
    weights.attrs["robust_accuracy_eps"],
)
write_output(weights, snakemake.output[0], f"weights of network {network}", snakemake)
