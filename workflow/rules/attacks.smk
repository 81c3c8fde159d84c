# The white-box attacks (neuroattack.attacks): sampled units of every network, one job per clean
# image; in silico the brain's own sites (its truth, for validation only); and the targeted
# attacks of the category preference (figure 3). The sites' black-box attacks are the loop's
# (loop.smk, attack_round).


rule attack_units:
    input:
        unpack(
            lambda wildcards: {
                "stimuli": artifact("stimuli"),
                **{f"network_{name}": path for name, path in network_files().items()},
                **{f"features_{name}": path for name, path in unit_features().items()},
            }
        ),
    output:
        artifact("unit_attack"),
    log:
        log_file("attack_units/image{index}"),
    group:
        "attacks"
    conda:
        "../../envs/compute.yaml"
    # one thread: the units' attacks run beside the loop's chain of jobs, on the cores it leaves idle
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=60, chunk_rows=config["attack"]["chunk_rows"]),
    params:
        attack=science(config["attack"], drop=["images", "layers", *TRANSFER_KEYS]),
        seeds=lambda wildcards: {
            "attacked_images": seed("attacked_images"),
            "units": seed("units"),
            "attack_starts": seed("attack_starts", 1, int(wildcards.index)),
            "model_baseline": seed("model_baseline", 1, int(wildcards.index)),
        },
    script:
        "../scripts/attack_units.py"


if IN_SILICO:

    rule brain_white_box:
        input:
            brain=artifact("brain"),
            stimuli=artifact("stimuli"),
        output:
            artifact("white_box"),
        log:
            log_file("{subject}brain_white_box"),
        wildcard_constraints:
            subject=IN_SILICO_SUBJECT,
        conda:
            "../../envs/compute.yaml"
        # one thread: it runs beside the loop's chain of jobs, on the cores the chain leaves idle
        threads: 1
        resources:
            **gpu_job(mem_mb=8000, runtime=120, chunk_rows=config["attack"]["chunk_rows"]),
        params:
            attack=science(config["attack"], drop=["units_per_network", "layers", *TRANSFER_KEYS]),
            seeds={"attacked_images": seed("attacked_images"), "white_box_starts": seed("white_box_starts")},
        script:
            "../scripts/brain_white_box.py"


# Category preference / super-stimuli (figure 3): targeted attacks on each site's surrogate push
# images of its least-preferred categories up (and of its most-preferred down), compared with
# its responses to natural images.
rule category_preference:
    input:
        stimuli=artifact("stimuli"),
        site_models=brain_file("round_site_models", round=1),
        surrogate=surrogate_network(),
        recordings=clean_recordings(subject=BRAIN_SUBJECT),
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
