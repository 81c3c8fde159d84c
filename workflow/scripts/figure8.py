"""Rule figure8: off-target specificity of the loop's perturbations, by eps and round."""

from neuroattack import figures, io
from neuroattack.analysis.sensitivity import by_round, site_sigma
from neuroattack.analysis.specificity import specificity
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
recordings = io.read_dataset(snakemake.input.recordings, "recordings")
per_round = []
for path in snakemake.input.responses:
    responses = io.read_dataset(path, "responses")
    sigma = site_sigma(recordings, responses["neuroid_id"].values).values
    summary = specificity(responses, sigma, snakemake.params.bootstrap, snakemake.params.seed)
    per_round.append(summary.assign_attrs(round=int(responses.attrs["round"])))
figure, plotted = figures.figure8(by_round(per_round))
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 8", snakemake)
