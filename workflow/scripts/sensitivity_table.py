"""Rule sensitivity_table: figure 1's s~(eps) with 95% intervals as an HTML table for the report."""

from pathlib import Path

from neuroattack import figures, io
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
table = figures.sensitivity_table(io.read_dataset(snakemake.input[0], "sensitivity"))
Path(snakemake.output[0]).write_text(table, encoding="utf-8")
