"""Rule transfer_ratios: black box / white box of the brain (in silico) and of every network
measured as the brain, by round and eps, and the brain's s~ calibrated by the networks' ratios."""

from neuroattack import io
from neuroattack.analysis.sensitivity import transfer_ratios
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
subjects = {
    subject: [io.read_dataset(path, "round_sensitivity") for path in snakemake.input[subject]]
    for subject in snakemake.params.subjects
}
result = transfer_ratios(subjects)
log.info("black box / white box by round:\n%s", result["ratio"].to_dataframe().unstack("eps").to_string())
write_output(result, snakemake.output[0], "transfer ratios", snakemake)
