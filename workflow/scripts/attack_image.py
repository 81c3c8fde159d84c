"""Rule attack_image: attack one clean image (all site surrogates and network units)."""
from neuroattack import io, pipeline
from neuroattack.attack import AttackSettings
from neuroattack.runtime import configure, device

log = configure(snakemake.log[0], snakemake.threads)
settings = dict(snakemake.params.attack)
eps_grid = [float(e) for e in settings.pop("eps")]
image_count, units = settings.pop("images"), settings.pop("units_per_network")
stimuli = io.read_dataset(snakemake.input.stimuli)
index = int(snakemake.wildcards.index)
stimulus_id = pipeline.attacked_stimuli(stimuli, image_count, snakemake.params.seed)[index]
names = snakemake.params.networks
result = pipeline.attack_image(
    stimulus_id,
    stimuli,
    networks={name: io.read_dataset(snakemake.input[f"weights_{name}"]) for name in names},
    features={name: io.read_dataset(snakemake.input[f"features_{name}"]) for name in names},
    surrogate=io.read_dataset(snakemake.input.surrogate),
    models=io.read_dataset(snakemake.input.site_models),
    settings=AttackSettings(**settings),
    eps_grid=eps_grid,
    units_per_network=units,
    seed=snakemake.params.seed + index,
    unit_seed=snakemake.params.seed,
    device=device(),
)
log.info("attacked %s: %d sites, %d units", stimulus_id, result.sizes["site"], result.sizes.get("unit", 0))
io.write_dataset(result, snakemake.output[0], f"attacks on {stimulus_id}", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
