"""Rule category_preference: push images of each site's least-preferred categories up
(and of its most-preferred down) with targeted attacks on its surrogate."""
from neuroattack import io, pipeline, targeted
from neuroattack.attack import AttackSettings
from neuroattack.recordings import mean_response
from neuroattack.runtime import configure, device

log = configure(snakemake.log[0], snakemake.threads)
settings = dict(snakemake.params.preference)
eps_grid = [float(e) for e in settings.pop("eps")]
images_per_site, n_categories = settings.pop("images_per_site"), settings.pop("categories")
directions = list(settings.pop("direction"))
models = io.read_dataset(snakemake.input.site_models)
surrogate = io.read_dataset(snakemake.input.surrogate)
result = targeted.category_preference_experiment(
    pipeline.surrogate_response(surrogate, models, snakemake.input.surrogate),
    io.read_dataset(snakemake.input.stimuli),
    mean_response(io.read_dataset(snakemake.input.recordings)),
    models["neuroid_id"].values.tolist(),
    eps_grid,
    images_per_site,
    n_categories,
    AttackSettings(**settings),
    snakemake.params.seed,
    directions,
    device(),
)
if "up" in directions:
    above = result["fraction_above_preferred"].sel(direction="up").mean("site")
    log.info("fraction of pushed-up images above the preferred-category mean, by eps: %s",
             ", ".join(f"{e:g}: {v:.2f}" for e, v in zip(above["eps"].values, above.values)))
io.write_dataset(result, snakemake.output[0], "category preference: targeted attacks", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
