# neuroattack: adversarial sensitivity of biological and artificial visual neurons
# (Guo et al., ICML 2022). Run `make run`, or `snakemake --profile workflow/profiles/default`.
import os
import sys

# A config file given with --configfile is complete on its own (tiny.yaml, paper.yaml):
# the embedded default is loaded only when none is given, so that the two are never
# merged key by key (a merge would add the default's networks to every other config).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/downloads.smk"
include: "workflow/rules/stimuli.smk"
include: "workflow/rules/networks.smk"


if SIMULATED:

    include: "workflow/rules/brain.smk"

else:

    include: "workflow/rules/recordings.smk"


include: "workflow/rules/features.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/preference.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/screening.smk"
include: "workflow/rules/loop.smk"


# `snakemake --report report.html`: every output marked with report() (the figures, the
# s~ table), the config, and this description of what was run.
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),


# With real recordings the loop stops at the first round the lab has not recorded yet.
if NEXT_ROUND is not None:
    NEXT_ROUND_MESSAGE = missing_round_message(
        NEXT_ROUND,
        rig_stimuli(NEXT_ROUND)[0],
        "columns stimulus_id, neuroid_id, repetition, response; README.md, 'Configuration'",
    )
    print(f"neuroattack: {NEXT_ROUND_MESSAGE}", file=sys.stderr)

    onsuccess:
        print(f"neuroattack: {NEXT_ROUND_MESSAGE}", file=sys.stderr)
