rule features:
    input:
        weights=result("networks/{network}.nc"),
        stimuli=rules.stimuli.output[0],
    output:
        result("features/{network}.nc"),
    log:
        log_file("features/{network}"),
    wildcard_constraints:
        network=NETWORK_PATTERN,
    conda:
        "../../envs/compute.yaml"
    resources:
        **gpu_job(mem_mb=8000, runtime=30),
    script:
        "../scripts/features.py"


rule site_models:
    input:
        features=surrogate_features(),
        recordings=result("recordings/clean.nc"),
        stimuli=rules.stimuli.output[0],
    output:
        result("site_models/site_models.nc"),
    log:
        log_file("site_models"),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    params:
        settings=science(config["surrogate"], drop=["network"]),
        sites=config["recordings"].get("sites"),
        seed=seed("site_model_folds"),
    script:
        "../scripts/site_models.py"
