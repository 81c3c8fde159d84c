"""Rule sensitivity_table: figure 1's s~(eps) with 95% intervals as an HTML table for the
report, and the report's headline (what was run, the table, where the brain lies among the
networks) as the HTML fragment its landing page opens on."""

from pathlib import Path

from neuroattack import figures, io
from neuroattack.figures.headline import RunFacts, headline
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
sensitivity = io.read_dataset(snakemake.input.sensitivity, "sensitivity")
Path(snakemake.output.table).write_text(figures.sensitivity_table(sensitivity), encoding="utf-8")
facts = RunFacts(**snakemake.params.facts)
transfer = io.read_dataset(snakemake.input.transfer, "transfer") if "transfer" in set(snakemake.input.keys()) else None
Path(snakemake.output.headline).write_text(headline(sensitivity, facts, transfer), encoding="utf-8")
log.info("headline for %d networks at %d eps", len(facts.layers), sensitivity.sizes["eps"])
