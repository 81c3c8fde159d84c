"""Rule figure2: example sites' clean and perturbed images, perturbations and responses."""

from neuroattack import figures, io
from neuroattack.analysis import coverage
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
named = set(snakemake.input.keys())  # input is also a list: `in` on it would test paths
examples = coverage.examples(
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    [io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    io.read_dataset(snakemake.input.responses, "responses") if "responses" in named else None,
    io.read_dataset(snakemake.input.recordings, "recordings"),
    snakemake.params.sites,
)
figure, plotted = figures.figure2(examples)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200, bbox_inches="tight")
figure.savefig(pdf, bbox_inches="tight")
write_output(plotted, numbers, "numbers plotted in figure 2", snakemake)
