"""Rule chosen_surrogate (surrogate.network: auto): the screening's pick, its weights and features."""

from neuroattack import io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
chosen = io.read_dataset(snakemake.input.screening, "screening").attrs["chosen"]
log.info("surrogate.network: auto chose %s", chosen)
write_output(
    io.read_dataset(snakemake.input[f"weights_{chosen}"], "weights"),
    snakemake.output.weights,
    f"weights of {chosen}, the chosen surrogate",
    snakemake,
)
write_output(
    io.read_dataset(snakemake.input[f"features_{chosen}"], "features"),
    snakemake.output.features,
    f"features of {chosen}, the chosen surrogate",
    snakemake,
)
