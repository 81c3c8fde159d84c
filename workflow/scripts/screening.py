"""Rule screening: every network scored as the surrogate (CKA, predictivity, transfer) and the pick."""

from neuroattack import io
from neuroattack.analysis import screening
from neuroattack.attacks.settings import AttackSettings
from neuroattack.runtime import configure, device, read_named, write_output

log = configure(snakemake.log[0], snakemake.threads)
inputs = snakemake.input
params = snakemake.params
result = screening.screen(
    screening.ScreeningInputs(
        io.read_dataset(inputs.stimuli, "stimuli"),
        io.read_dataset(inputs.recordings, "recordings"),
        networks=read_named(inputs, "network_", "network"),
        features=read_named(inputs, "features_", "features"),
        brain=io.read_dataset(inputs.brain, "brain") if inputs.get("brain") else None,
        layer_features=read_named(inputs, "layer_features_", "features"),
    ),
    screening.ScreeningSettings.from_config(
        params.screening, params.surrogate, params.seed, params.sites, params.repetitions, params.recording_seed
    ),
    AttackSettings.from_config(params.attack, chunk_rows=snakemake.resources.chunk_rows),
    device(),
)
log.info("picks: %s", ", ".join(f"by {c}: {result.attrs[f'pick_by_{c}'] or '-'}" for c in screening.CRITERIA))
write_output(result, snakemake.output[0], "surrogate screening", snakemake)
