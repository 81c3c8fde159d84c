"""Rule sensitivity: s~(eps) with bootstrap CIs for the brain and every network, and for each
network measured as the brain (like_for_like), its black-box s~ at the same round."""

from neuroattack import io
from neuroattack.analysis import sensitivity
from neuroattack.runtime import configure, read_named, write_output

log = configure(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
named = set(snakemake.input.keys())  # input is also a list: `in` on it would test paths
optional = {key: io.read_dataset(snakemake.input[key], key) for key in ("responses", "white_box") if key in named}
result = sensitivity.estimate_populations(
    attacks=[io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    unit_attacks=[io.read_dataset(path, "unit_attack") for path in snakemake.input.unit_attacks],
    responses=optional.get("responses"),
    recordings=io.read_dataset(snakemake.input.recordings, "recordings"),
    features=read_named(snakemake.input, "features_", "features"),
    white_box_changes=optional.get("white_box"),
    bootstrap=settings["bootstrap"],
    random_pairs=settings["random_pairs"],
    seed=snakemake.params.seed,
)
measured = {
    key.removeprefix("measured_"): io.read_dataset(snakemake.input[key], "round_sensitivity")
    for key in named
    if key.startswith("measured_")
}
result = sensitivity.with_measured_networks(result, measured)
log.info("s~(eps):\n%s", result["s_tilde"].to_pandas().to_string())
write_output(result, snakemake.output[0], "normalised adversarial sensitivity", snakemake)
