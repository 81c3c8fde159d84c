"""Rule stimuli: the stimulus set, from the embedded photographs, a Brain-Score set or a folder."""

from neuroattack.data.stimuli import stimulus_set
from neuroattack.runtime import configure, write_output

log = configure(snakemake.log[0], snakemake.threads)
stimuli = stimulus_set(snakemake.params.settings, snakemake.params.seed, dict(snakemake.input.items()))
log.info("%d stimuli in %d categories", stimuli.sizes["stimulus_id"], len(set(stimuli["category"].values)))
write_output(stimuli, snakemake.output[0], "stimulus set", snakemake)
