"""Rule brain_white_box: attack the simulated sites directly (validation only)."""

from neuroattack import io
from neuroattack.attacks import untargeted
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import white_box_changes
from neuroattack.runtime import ProgressLog, configure, device, write_output

log = configure(snakemake.log[0], snakemake.threads)
attack = snakemake.params.attack
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
result = white_box_changes(
    io.read_dataset(snakemake.input.brain, "brain"),
    stimuli,
    untargeted.attacked_stimuli(stimuli, attack["images"], snakemake.params.seeds["attacked_images"]),
    AttackSettings.from_config(attack, chunk_rows=snakemake.resources.chunk_rows),
    attack["eps"],
    snakemake.params.seeds["white_box_starts"],
    device(),
    ProgressLog("white-box attack (row-restarts)"),
)
write_output(result, snakemake.output[0], "white-box sensitivity of the simulated brain", snakemake)
