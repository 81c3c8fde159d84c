"""Rule screening: every network scored as the surrogate (CKA, predictivity, transfer) and the pick."""

from neuroattack import io
from neuroattack.analysis import screening
from neuroattack.attacks.settings import AttackSettings
from neuroattack.runtime import configure, device, read_named, write_output

log = configure(snakemake.log[0], snakemake.threads)
inputs = snakemake.input
result = screening.screen(
    io.read_dataset(inputs.stimuli, "stimuli"),
    io.read_dataset(inputs.recordings, "recordings"),
    networks=read_named(inputs, "weights_", "weights"),
    features=read_named(inputs, "features_", "features"),
    surrogate=snakemake.params.surrogate,
    screening=snakemake.params.screening,
    attack=AttackSettings.from_config(snakemake.params.attack, chunk_rows=snakemake.resources.chunk_rows),
    seed=snakemake.params.seed,
    sites=snakemake.params.sites,
    brain=io.read_dataset(inputs.brain, "brain") if inputs.get("brain") else None,
    repetitions=snakemake.params.repetitions,
    recording_seed=snakemake.params.recording_seed,
    device=device(),
    layer_features=read_named(inputs, "layer_features_", "features"),
)
log.info("picks: %s", ", ".join(f"by {c}: {result.attrs[f'pick_by_{c}'] or '-'}" for c in screening.CRITERIA))
write_output(result, snakemake.output[0], "surrogate screening", snakemake)
