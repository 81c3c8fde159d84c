"""Rule figure6: achieved normalised change by round of the closed loop."""

from neuroattack import figures, io
from neuroattack.analysis.sensitivity import by_round
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
figure, plotted = figures.figure6(by_round([io.read_dataset(path, "round_sensitivity") for path in snakemake.input]))
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 6", snakemake)
