"""Rule build_brain: the held-out network plus a fixed random readout to m sites (of its
features at brain.network.layer); for a network measured as the brain beside real recordings,
as many sites as the recorded ones kept, with their noise (reliabilities and repetitions)."""

from neuroattack import io
from neuroattack.brain.simulated import build_brain, matched_repetitions, with_matched_noise
from neuroattack.config import PENULTIMATE
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.brain
pixels = io.read_dataset(snakemake.input.stimuli, "stimuli")["pixels"].values
matched = "recorded_sites" in set(snakemake.input.keys())
recorded_sites = io.read_dataset(snakemake.input.recorded_sites, "site_models") if matched else None
simulated = build_brain(
    io.read_dataset(snakemake.input.network, "network"),
    pixels,
    n_sites=recorded_sites.sizes["site"] if matched else settings["sites"],
    mean_count=settings["mean_count"],
    baseline_count=settings["baseline_count"],
    beta=settings["softplus_beta"],
    drive_offset=settings["drive_offset"],
    seed=snakemake.params.seed,
    layer=settings.get("layer", PENULTIMATE),  # in the settings only where it is not the default
)
if matched:
    repetitions = matched_repetitions(io.read_dataset(snakemake.input.recorded, "recordings"), recorded_sites)
    reliability = recorded_sites["reliability"].values
    simulated = with_matched_noise(simulated, pixels, reliability, repetitions, settings["noise_seed"])
    log.info("noise matched to %d recorded sites' reliabilities, %d repetitions", len(reliability), repetitions)
write_output(simulated, snakemake.output[0], "simulated IT population", snakemake)
