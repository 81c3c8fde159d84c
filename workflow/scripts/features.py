"""Rule features: penultimate-layer activations of one network on the stimuli."""

from neuroattack import io
from neuroattack.features import extract_features
from neuroattack.runtime import configure, device

log = configure(snakemake.log[0], snakemake.threads)
features = extract_features(
    io.read_dataset(snakemake.input.weights),
    io.read_dataset(snakemake.input.stimuli),
    snakemake.wildcards.network,
    device(),
)
io.write_dataset(
    features,
    snakemake.output[0],
    f"features of {snakemake.wildcards.network}",
    f"rule {snakemake.rule}",
    snakemake.input,
    snakemake.config,
)
