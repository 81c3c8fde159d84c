"""Rule sensitivity: s~(eps) with bootstrap CIs for the brain and every network."""
from neuroattack import io, pipeline
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
result = pipeline.sensitivity(
    attacks=[io.read_dataset(path) for path in snakemake.input.attacks],
    responses=io.read_dataset(snakemake.input.responses) if "responses" in snakemake.input.keys() else None,
    recordings=io.read_dataset(snakemake.input.recordings),
    features={name: io.read_dataset(snakemake.input[f"features_{name}"]) for name in snakemake.params.networks},
    white_box=io.read_dataset(snakemake.input.white_box) if "white_box" in snakemake.input.keys() else None,
    bootstrap=settings["bootstrap"],
    random_pairs=settings["random_pairs"],
    seed=snakemake.params.seed,
)
log.info("s~(eps):\n%s", result["s_tilde"].to_pandas().to_string())
io.write_dataset(result, snakemake.output[0], "normalised adversarial sensitivity", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
