"""Rule category_preference: push images of each site's least-preferred categories up
(and of its most-preferred down) with targeted attacks on its surrogate."""

from neuroattack import io
from neuroattack.attacks import targeted
from neuroattack.attacks.settings import AttackSettings
from neuroattack.brain.sitemodels import surrogate_response
from neuroattack.data.recordings import mean_response
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
preference = snakemake.params.preference
models = io.read_dataset(snakemake.input.site_models, "site_models")
result = targeted.category_preference_experiment(
    surrogate_response(io.read_dataset(snakemake.input.surrogate, "network"), models, snakemake.input.surrogate),
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    mean_response(io.read_dataset(snakemake.input.recordings, "recordings")),
    models["neuroid_id"].values.tolist(),
    preference["eps"],
    preference["images_per_site"],
    preference["categories"],
    AttackSettings.from_config(preference, chunk_rows=snakemake.resources.chunk_rows),
    snakemake.params.seed,
    preference["direction"],
    device(),
)
if "increase" in preference["direction"]:
    above = result["fraction_above_preferred"].sel(direction="increase").mean("site")
    log.info(
        "fraction of pushed-up images above the preferred-category mean, by eps: %s",
        ", ".join(f"{e:g}: {v:.2f}" for e, v in zip(above["eps"].values, above.values, strict=True)),
    )
write_output(result, snakemake.output[0], "category preference: targeted attacks", snakemake)
