"""Rule figure7: s~(eps) of every network by depth (attack.layers) beside the brain's."""

from neuroattack import figures, io
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
transfer = io.read_dataset(snakemake.input.transfer, "transfer") if "transfer" in set(snakemake.input.keys()) else None
figure, plotted = figures.figure7(
    io.read_dataset(snakemake.input.sensitivity, "sensitivity"),
    snakemake.params.layers,
    snakemake.params.own_layers,
    transfer,
)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200)
figure.savefig(pdf)
write_output(plotted, numbers, "numbers plotted in figure 7", snakemake)
