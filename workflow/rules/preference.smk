# Category preference / super-stimuli (figure 3): targeted attacks on each site's
# surrogate push images of its least-preferred categories up (and of its most-preferred
# down), compared with its responses to natural images.


rule category_preference:
    input:
        stimuli=artifact("stimuli"),
        site_models=artifact("site_models"),
        surrogate=surrogate_weights(),
        recordings=artifact("clean_recordings"),
    output:
        artifact("preference"),
    log:
        log_file("category_preference"),
    conda:
        "../../envs/compute.yaml"
    # one thread: it runs beside the loop's chain of jobs, on the cores the chain leaves idle
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=60, chunk_rows=config["preference"]["chunk_rows"]),
    params:
        preference=science(config["preference"], drop=["figure_sites"]),
        seed=seed("preference_starts"),
    script:
        "../scripts/category_preference.py"


rule figure3:
    input:
        rules.category_preference.output[0],
    output:
        png=report(artifact("figure", number=3) + ".png", caption="../report/figure3.rst", category="Figures"),
        pdf=artifact("figure", number=3) + ".pdf",
        numbers=artifact("figure", number=3) + ".nc",
    log:
        log_file("figure3"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        sites=config["preference"]["figure_sites"],
    script:
        "../scripts/figure3.py"
