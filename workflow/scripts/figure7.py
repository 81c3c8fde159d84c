"""Rule figure7: s~(eps) of every network by depth (attack.layers) beside the brain's."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
figure, plotted = figures.figure7(
    io.read_dataset(snakemake.input[0], "sensitivity"), snakemake.params.layers, snakemake.params.own_layers
)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 7", snakemake)
