"""Rule features: one network's activations at its layer on the stimuli."""

from neuroattack import io
from neuroattack.networks.features import extract_features
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
features = extract_features(
    io.read_dataset(snakemake.input.network, "network"),
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    snakemake.wildcards.network,
    device(),
    snakemake.params.layer,
)
write_output(features, snakemake.output[0], f"features of {snakemake.wildcards.network}", snakemake)
