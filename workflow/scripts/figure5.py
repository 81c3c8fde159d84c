"""Rule figure5: the screening criteria per candidate network and the transfer matrix."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
figure, plotted = figures.figure5(io.read_dataset(snakemake.input[0], "screening"))
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 5", snakemake)
