"""Rule best_layer_features (surrogate.layer: auto): a network's features at the layer that
best predicts the recordings, by the screening's per-layer predictivity."""

from neuroattack import io
from neuroattack.analysis.screening import best_layer_features
from neuroattack.runtime import configure, read_named, write_output

log = configure(snakemake.log[0], snakemake.threads)
name = snakemake.wildcards.network
chosen = best_layer_features(
    io.read_dataset(snakemake.input.screening, "screening"), name, read_named(snakemake.input, "features_", "features")
)
log.info("network %s: best layer %s", name, chosen.attrs["layer"])
write_output(chosen, snakemake.output[0], f"features of {name} at its best layer", snakemake)
