"""Rule build_brain: the held-out network plus a fixed random readout to m sites (of its
features at brain.network.layer)."""

from neuroattack import io
from neuroattack.brain.simulated import build_brain
from neuroattack.config import PENULTIMATE
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.brain
simulated = build_brain(
    io.read_dataset(snakemake.input.network, "network"),
    io.read_dataset(snakemake.input.stimuli, "stimuli")["pixels"].values,
    n_sites=settings["sites"],
    mean_count=settings["mean_count"],
    baseline_count=settings["baseline_count"],
    beta=settings["softplus_beta"],
    drive_offset=settings["drive_offset"],
    seed=snakemake.params.seed,
    layer=settings.get("layer", PENULTIMATE),  # in the settings only where it is not the default
)
write_output(simulated, snakemake.output[0], "simulated IT population", snakemake)
