"""Rule figure1: s~(eps) for the brain and every network, with reference lines."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
figure, plotted = figures.figure1(io.read_dataset(snakemake.input[0], "sensitivity"))
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 1", snakemake)
