rule features:
    input:
        weights=viewed_network_weights,
        stimuli=rules.stimuli.output[0],
    output:
        artifact("features"),
    log:
        log_file("features/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.networks + RUN.views),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **gpu_job(mem_mb=8000, runtime=30),
    params:
        layer=lambda wildcards: network_layer(config, wildcards.network),
    script:
        "../scripts/features.py"


rule site_models:
    input:
        features=surrogate_features(),
        recordings=artifact("clean_recordings"),
        stimuli=rules.stimuli.output[0],
    output:
        artifact("site_models"),
    log:
        log_file("site_models"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    params:
        settings=science(config["surrogate"], drop=["network", "layer", "layers"]),
        sites=config["recordings"].get("sites"),
        seed=seed("site_model_folds"),
    script:
        "../scripts/site_models.py"
