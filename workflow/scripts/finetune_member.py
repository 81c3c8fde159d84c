"""Rule finetune_member: one surrogate network fine-tuned on everything recorded before a round."""

from neuroattack import io
from neuroattack.loop import refit
from neuroattack.loop.finetune import FinetuneSettings
from neuroattack.runtime import configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
rounds = range(1, int(snakemake.wildcards.round))
tuned = refit.finetune_member(
    first_models=io.read_dataset(snakemake.input.first, "site_models"),
    weights=io.read_dataset(snakemake.input.network, "network"),
    features=io.read_dataset(snakemake.input.features, "features"),
    clean_recordings=io.read_dataset(snakemake.input.recordings, "recordings"),
    stimuli=io.read_dataset(snakemake.input.stimuli, "stimuli"),
    earlier=[
        (
            io.read_dataset(snakemake.input[f"round_stimuli_{number}"], "round_stimuli"),
            io.read_dataset(snakemake.input[f"recordings_{number}"], "recordings"),
        )
        for number in rounds
    ],
    settings=FinetuneSettings(**snakemake.params.settings),
    seed=snakemake.params.seed,
    device=device(),
)
error = tuned.attrs["finetune_held_out_error"]
log.info("held-out error %.4f -> %.4f (best epoch %d)", error[0], min(error), tuned.attrs["finetune_best_epoch"])
write_output(
    tuned,
    snakemake.output[0],
    f"{snakemake.wildcards.network} fine-tuned for round {snakemake.wildcards.round}",
    snakemake,
)
