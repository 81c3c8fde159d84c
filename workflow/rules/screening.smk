# Choosing the surrogate (figure 5): every network of the config screened against the recorded
# sites by CKA, Brain-Score-convention predictivity and transfer; surrogate.network: auto
# takes the best by screening.criterion.


rule screening:
    input:
        unpack(screening_inputs),
    output:
        artifact("screening"),
    log:
        log_file("screening"),
    conda:
        "../../envs/compute.yaml"
    # one thread: it runs beside the loop's chain of jobs, on the cores the chain leaves idle
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=120, chunk_rows=config["attack"]["chunk_rows"]),
    params:
        screening=science(config["screening"], drop=["criterion"]),
        attack=science(config["attack"], drop=["eps", "images", "units_per_network", "layers"]),
        surrogate=science(config["surrogate"], drop=["network", "layer", "layers"]),
        sites=config["recordings"].get("sites"),
        seed=seed("screening"),
        repetitions=config["brain"]["repetitions"] if RUN.simulated else 0,
        recording_seed=seed("screening_session"),
    script:
        "../scripts/screening.py"


if RUN.auto_surrogate:

    rule chosen_surrogate:
        input:
            unpack(
                lambda wildcards: {
                    "screening": rules.screening.output[0],
                    **{f"network_{name}": path for name, path in network_files().items()},
                    **{f"features_{name}": features_as_member(name) for name in RUN.networks},
                }
            ),
        output:
            network=artifact("surrogate_network"),
            features=artifact("surrogate_features"),
        log:
            log_file("chosen_surrogate"),
        localrule: True
        conda:
            "../../envs/compute.yaml"
        params:
            criterion=config["screening"]["criterion"],
        script:
            "../scripts/chosen_surrogate.py"


if RUN.auto_layer:

    rule best_layer_features:
        input:
            unpack(
                lambda wildcards: {
                    "screening": rules.screening.output[0],
                    **{
                        f"features_{view}": path
                        for view, path in network_features(
                            [wildcards.network] + [v for v in RUN.layer_views if split_view(v)[0] == wildcards.network]
                        ).items()
                    },
                }
            ),
        output:
            artifact("best_layer_features"),
        log:
            log_file("best_layer_features/{network}"),
        wildcard_constraints:
            network=name_pattern(RUN.networks),
        localrule: True
        conda:
            "../../envs/compute.yaml"
        script:
            "../scripts/best_layer_features.py"


if not RUN.simulated:

    rule export_screening_stimuli:
        input:
            screening=rules.screening.output[0],
            stimuli=artifact("stimuli"),
        output:
            multiext(artifact("screening_rig_stimuli"), ".csv", ".zip"),
        log:
            log_file("export_screening_stimuli"),
        localrule: True
        conda:
            "../../envs/compute.yaml"
        script:
            "../scripts/export_screening_stimuli.py"
