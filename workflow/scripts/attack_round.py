"""Rule attack_round: a later round's attack on one clean image with that round's site models."""

from neuroattack import io, loop
from neuroattack.attacks.settings import AttackSettings
from neuroattack.runtime import ProgressLog, configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
first = io.read_dataset(snakemake.input.first, "attack")
warm_start = "previous" in set(snakemake.input.keys())  # loop.warm_start: the earlier round's attack
result = loop.attack_sites_again(
    first,
    io.read_dataset(snakemake.input.stimuli, "stimuli"),
    [io.read_dataset(path, "weights") for path in snakemake.input.surrogate],
    [io.read_dataset(path, "site_models") for path in snakemake.input.site_models],
    AttackSettings.from_config(snakemake.params.attack, chunk_rows=snakemake.resources.chunk_rows),
    seed=snakemake.params.seeds["attack_starts"],
    baseline_seed=snakemake.params.seeds["model_baseline"],
    previous=io.read_dataset(snakemake.input.previous, "attack") if warm_start else None,
    device=device(),
    progress=ProgressLog(f"round {snakemake.wildcards.round} attack on {first.attrs['stimulus_id']} (row-restarts)"),
)
write_output(result, snakemake.output[0], f"round {snakemake.wildcards.round} attacks", snakemake)
