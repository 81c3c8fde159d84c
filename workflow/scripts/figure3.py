"""Rule figure3: targeted attacks at several eps against each site's preferred natural images."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
figure, plotted = figures.figure3(io.read_dataset(snakemake.input[0], "preference"), snakemake.params.sites)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200, bbox_inches="tight")
figure.savefig(pdf, bbox_inches="tight")
write_output(plotted, numbers, "numbers plotted in figure 3", snakemake)
