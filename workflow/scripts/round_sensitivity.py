"""Rule round_sensitivity: one round's s~(eps): black box, recorded random baseline, surrogate, white box."""

from neuroattack import io
from neuroattack.loop import responses
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
named = set(snakemake.input.keys())
result = responses.round_sensitivity(
    attacks=[io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    responses=io.read_dataset(snakemake.input.responses, "responses"),
    recordings=io.read_dataset(snakemake.input.recordings, "recordings"),
    white_box_changes=io.read_dataset(snakemake.input.white_box, "white_box") if "white_box" in named else None,
    bootstrap=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
log.info("round %s s~(eps):\n%s", snakemake.wildcards.round, result["s_tilde"].to_pandas().to_string())
write_output(result, snakemake.output[0], f"sensitivity of round {snakemake.wildcards.round}", snakemake)
