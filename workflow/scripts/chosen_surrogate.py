"""Rule chosen_surrogate (surrogate.network: auto): the weights and features of the screening's
pick by screening.criterion."""

from neuroattack import io
from neuroattack.analysis import screening
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
criterion = snakemake.params.criterion
chosen = screening.choose(io.read_dataset(snakemake.input.screening, "screening"), criterion)
log.info("surrogate.network: auto chose %s by %s", chosen, criterion)
for kind, prefix in (("network", "network_"), ("features", "features_")):
    chosen_data = io.read_dataset(snakemake.input[f"{prefix}{chosen}"], kind)
    chosen_data.attrs["surrogate_chosen_by"] = criterion
    write_output(
        chosen_data, snakemake.output[kind], f"{kind} of {chosen}, the surrogate chosen by {criterion}", snakemake
    )
