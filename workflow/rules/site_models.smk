# Round 1's site models (neuroattack.brain.sitemodels): each usable site's linear readout of
# the surrogate's features, fitted on the clean recordings. They choose the sites every round
# attacks; later rounds refit them (loop.smk).


rule site_models:
    input:
        features=first_site_models_features,
        recordings=clean_recordings(),
        stimuli=artifact("stimuli"),
    output:
        artifact("round_site_models", round=1),
    log:
        log_file("{subject}site_models/round1"),
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
