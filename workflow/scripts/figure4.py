"""Rule figure4: every site is susceptible; adversarial images exist near every clean image."""

from neuroattack import figures, io
from neuroattack.analysis import coverage
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
named = set(snakemake.input.keys())  # input is also a list: `in` on it would test paths
optional = {key: io.read_dataset(snakemake.input[key], key) for key in ("responses", "white_box") if key in named}
covered = coverage.coverage(
    attacks=[io.read_dataset(path, "site_attack") for path in snakemake.input.attacks],
    responses=optional.get("responses"),
    recordings=io.read_dataset(snakemake.input.recordings, "recordings"),
    white_box_changes=optional.get("white_box"),
    sensitivity=io.read_dataset(snakemake.input.sensitivity, "sensitivity"),
    bootstrap=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
figure, plotted = figures.figure4(covered)
png, pdf, numbers = snakemake.output
figure.savefig(png, dpi=200, bbox_inches="tight")
figure.savefig(pdf, bbox_inches="tight")
write_output(plotted, numbers, "numbers plotted in figure 4", snakemake)
