"""Rule attack_units: the white-box attack on sampled units of every network, on one clean image."""

from neuroattack import io
from neuroattack.attacks import untargeted
from neuroattack.attacks.settings import AttackSettings
from neuroattack.runtime import ProgressLog, configure, device, read_named, write_output

log = configure(snakemake.log[0], snakemake.threads)
attack = snakemake.params.attack
seeds = snakemake.params.seeds
index = int(snakemake.wildcards.index)
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
stimulus_id = untargeted.attacked_stimuli(stimuli, index + 1, seeds["attacked_images"])[index]
result = untargeted.attack_units(
    stimulus_id,
    stimuli,
    networks=read_named(snakemake.input, "network_", "network"),
    features=read_named(snakemake.input, "features_", "features"),
    settings=AttackSettings.from_config(attack, chunk_rows=snakemake.resources.chunk_rows),
    eps_grid=attack["eps"],
    units_per_network=attack["units_per_network"],
    seed=seeds["attack_starts"],
    unit_seed=seeds["units"],
    baseline_seed=seeds["model_baseline"],
    device=device(),
    progress=ProgressLog(f"units' attack on {stimulus_id} (row-restarts)"),
)
log.info("attacked %s: %d units", stimulus_id, result.sizes.get("unit", 0))
write_output(result, snakemake.output[0], f"attacks of network units on {stimulus_id}", snakemake)
