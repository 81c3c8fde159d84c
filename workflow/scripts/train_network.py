"""Rule train_network: train one ResNet (standard, or PGD-L2 adversarial when eps > 0)."""

from neuroattack import io, training
from neuroattack.models import Architecture
from neuroattack.runtime import configure, device

log = configure(snakemake.log[0], snakemake.threads)
spec, settings = snakemake.params.spec, dict(snakemake.params.training)
eval_eps = settings.pop("robust_eval_eps")
data = training.training_set(snakemake.params.data, snakemake.input.get("folder"))
arch = Architecture(widths=tuple(spec["widths"]), blocks=tuple(spec["blocks"]), num_classes=len(data[2]))
weights = training.train_classifier(
    arch, spec["eps"], spec["seed"], data, training.TrainingSettings(**settings), eval_eps, device()
)
log.info(
    "%s: clean accuracy %.3f, robust accuracy %.3f at eps %.2f",
    snakemake.wildcards.network,
    weights.attrs["clean_accuracy"],
    weights.attrs["robust_accuracy"],
    eval_eps,
)
io.write_dataset(
    weights,
    snakemake.output[0],
    f"weights of network {snakemake.wildcards.network}",
    f"rule {snakemake.rule}",
    snakemake.input,
    snakemake.config,
)
