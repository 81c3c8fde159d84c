"""Rule build_brain: the held-out network plus a fixed random readout to m sites."""

from neuroattack import brain, io
from neuroattack.models import network_from_dataset
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.brain
weights = io.read_dataset(snakemake.input.network)
stimuli = io.read_dataset(snakemake.input.stimuli)
simulated = brain.build_brain(
    network_from_dataset(weights, snakemake.input.network),
    weights,
    stimuli["pixels"].values,
    n_sites=settings["sites"],
    mean_count=settings["mean_count"],
    baseline_count=settings["baseline_count"],
    beta=settings["softplus_beta"],
    drive_offset=settings["drive_offset"],
    seed=settings["seed"],
)
io.write_dataset(
    simulated,
    snakemake.output[0],
    "simulated IT population",
    f"rule {snakemake.rule}",
    snakemake.input,
    snakemake.config,
)
