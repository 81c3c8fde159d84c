"""Rule figure1: s~(eps) for the brain and every network, with reference lines."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
named = set(snakemake.input.keys())
transfer = io.read_dataset(snakemake.input.transfer, "transfer") if "transfer" in named else None
figure, plotted = figures.figure1(io.read_dataset(snakemake.input.sensitivity, "sensitivity"), transfer)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 1", snakemake)
