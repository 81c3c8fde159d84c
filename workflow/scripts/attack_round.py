"""Rule attack_round: a round's attack on every clean image with that round's site models."""

from neuroattack import io
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_round, attacked_stimuli
from neuroattack.runtime import ProgressLog, configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
number = snakemake.wildcards.round
attack, seeds = snakemake.params.attack, snakemake.params.seeds
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
warm_start = "previous" in set(snakemake.input.keys())  # loop.warm_start: the earlier round's attacks
results = attack_round(  # each image as soon as it is done, so its file is written at once
    attacked_stimuli(stimuli, snakemake.params.images, seeds["attacked_images"]),
    stimuli,
    [io.read_dataset(path, "network") for path in snakemake.input.members],
    [io.read_dataset(path, "site_models") for path in snakemake.input.site_models],
    AttackSettings.from_config(attack, chunk_rows=snakemake.resources.chunk_rows),
    attack["eps"],
    seeds=[(pair["attack_starts"], pair["model_baseline"]) for pair in seeds["per_image"]],
    previous=[io.read_dataset(path, "site_attack") for path in snakemake.input.previous] if warm_start else None,
    device=device(),
    workers=snakemake.threads,
    progress=lambda stimulus_id: ProgressLog(f"round {number} attack on {stimulus_id} (row-restarts)"),
)
for result, path in zip(results, snakemake.output, strict=True):
    write_output(result, path, f"round {number} attacks on {result.attrs['stimulus_id']}", snakemake)
