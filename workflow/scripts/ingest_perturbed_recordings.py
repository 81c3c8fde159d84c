"""Rule ingest_perturbed_recordings: a rig's recordings of the exported set -> responses."""
from neuroattack import io, pipeline, sources
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
attacks = [io.read_dataset(path) for path in snakemake.input.attacks]
shown = pipeline.perturbed_index(attacks)  # ids and coords only: the rig already has the pixels
responses = pipeline.responses_to_attacks(shown, sources.table_to_recordings(snakemake.input.table), attacks)
io.write_dataset(responses, snakemake.output[0], "responses to perturbed images", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
