"""Rule brain_white_box: attack the simulated sites directly (validation only)."""
from neuroattack import io, pipeline
from neuroattack.attack import AttackSettings
from neuroattack.runtime import configure, device

log = configure(snakemake.log[0], snakemake.threads)
settings = dict(snakemake.params.attack)
eps_grid = [float(e) for e in settings.pop("eps")]
image_count = settings.pop("images")
settings.pop("units_per_network")
stimuli = io.read_dataset(snakemake.input.stimuli)
images = pipeline.attacked_stimuli(stimuli, image_count, snakemake.params.seed)
result = pipeline.brain_white_box(
    io.read_dataset(snakemake.input.brain), stimuli, images, AttackSettings(**settings), eps_grid, snakemake.params.seed, device()
)
io.write_dataset(result, snakemake.output[0], "white-box sensitivity of the simulated brain", f"rule {snakemake.rule}", snakemake.input, snakemake.config)
