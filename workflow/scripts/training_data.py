"""Rule training_data: the labelled images every trained network learns from, made once."""

from neuroattack.networks import training
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
data = training.labelled_dataset(training.training_set(snakemake.params.data, snakemake.input.get("folder")))
log.info("%d labelled images in %d categories", data.sizes["image"], data.sizes["category"])
write_output(data, snakemake.output[0], "training data of the networks", snakemake)
