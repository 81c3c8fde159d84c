# neuroattack: adversarial sensitivity of biological and artificial visual neurons
# (Guo et al., ICML 2022). Run `make run`, or `snakemake --profile workflow/profiles/default`.
# The workflow is workflow/Snakefile (the layout of the Snakemake workflow catalog); this file
# only includes it, so that `snakemake` from the repository's root runs it as before.


include: "workflow/Snakefile"


# An include restores the including file's default target afterwards (none here): rule all,
# the default target of workflow/Snakefile, stays the default when run from this file.
workflow.default_target = "all"
