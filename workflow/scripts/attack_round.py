"""Rules attack_round(_part<k>): a round's attack on its clean images with that round's site models.

Every image's file is written as soon as it is done, with a copy under finished/ that a rerun
of the job reuses when nothing it depends on changed: a killed job loses one image at most."""

from functools import partial

from neuroattack import io
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_round, attacked_stimuli
from neuroattack.loop.recorded_gradient import RecordedGradient, round_means
from neuroattack.runtime import (
    ProgressLog,
    configure,
    device,
    input_digests,
    resume_key,
    reuse_finished,
    write_finished,
)

log = configure(snakemake.log[0], snakemake.threads)
number = snakemake.wildcards.round
attack, seeds, images = snakemake.params.attack, snakemake.params.seeds, snakemake.params.images
chunk_rows = snakemake.resources.chunk_rows
stimuli = io.read_dataset(snakemake.input.stimuli, "stimuli")
stimulus_ids = attacked_stimuli(stimuli, max(images) + 1, seeds["attacked_images"])
# an image's key: every input's contents, the attack's settings and the image's own seeds
digests = input_digests(snakemake.input)
keys = [resume_key(digests, [attack, image, pair]) for image, pair in zip(images, seeds["per_image"], strict=True)]
todo = [i for i, key in enumerate(keys) if not reuse_finished(snakemake.output[i], key)]
if len(todo) < len(images):
    log.info("round %s: %d of %d images finished before, reused", number, len(images) - len(todo), len(images))
warm_start = "previous" in set(snakemake.input.keys())  # loop.warm_start: the earlier round's attacks
refine = RecordedGradient(**(snakemake.params.recorded_gradient or {}))
earlier = round_means(  # loop.recorded_gradient: what the earlier rounds recorded
    [
        (
            io.read_dataset(snakemake.input[f"round_stimuli_{number}"], "round_stimuli"),
            io.read_dataset(snakemake.input[f"recordings_{number}"], "recordings"),
        )
        for number in range(1, int(number))
        if f"round_stimuli_{number}" in set(snakemake.input.keys())
    ]
)
log.info("round %s: attacking %d images, %d rows per batch", number, len(todo), chunk_rows)
results = attack_round(  # each image as soon as it is done
    [stimulus_ids[images[i]] for i in todo],
    stimuli,
    [io.read_dataset(path, "network") for path in snakemake.input.members],
    [io.read_dataset(path, "site_models") for path in snakemake.input.site_models],
    AttackSettings.from_config(attack, chunk_rows=chunk_rows),
    attack["eps"],
    seeds=[(seeds["per_image"][i]["attack_starts"], seeds["per_image"][i]["model_baseline"]) for i in todo],
    previous=[io.read_dataset(snakemake.input.previous[i], "site_attack") for i in todo] if warm_start else None,
    device=device(),
    workers=snakemake.threads,
    progress=lambda stimulus_id: ProgressLog(f"round {number} attack on {stimulus_id} (row-restarts)"),
    refine=partial(refine.corrected, rounds=earlier) if refine.weight and earlier else None,
)
for i, result in zip(todo, results, strict=True):
    title = f"round {number} attacks on {result.attrs['stimulus_id']}"
    write_finished(result, snakemake.output[i], title, snakemake, keys[i])
