"""Rule attack_image: attack one clean image (every site's round-1 site models, sampled units of every network)."""

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
result = untargeted.attack_image(
    stimulus_id,
    stimuli,
    networks=read_named(snakemake.input, "weights_", "weights"),
    features=read_named(snakemake.input, "features_", "features"),
    surrogates=[io.read_dataset(path, "weights") for path in snakemake.input.surrogate],
    site_models=[io.read_dataset(path, "site_models") for path in snakemake.input.site_models],
    settings=AttackSettings.from_config(attack, chunk_rows=snakemake.resources.chunk_rows),
    eps_grid=attack["eps"],
    units_per_network=attack["units_per_network"],
    seed=seeds["attack_starts"],
    unit_seed=seeds["units"],
    baseline_seed=seeds["model_baseline"],
    device=device(),
    progress=ProgressLog(f"attack on {stimulus_id} (row-restarts)"),
)
log.info("attacked %s: %d sites, %d units", stimulus_id, result.sizes["site"], result.sizes.get("unit", 0))
write_output(result, snakemake.output[0], f"attacks on {stimulus_id}", snakemake)
