rule train_network:
    input:
        unpack(training_inputs),
    output:
        artifact("network"),
    log:
        log_file("train_network/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.trained + (("brain",) if RUN.simulated else ())),
    priority: lambda wildcards: training_priority(config, wildcards.network)
    conda:
        "../../envs/compute.yaml"
    # On CPU, networks training side by side on one thread each finish sooner than one after
    # the other on two (1.25x on a 2-core machine); `--set-threads train_network=N` to change.
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=120),
    params:
        spec=lambda wildcards: network_spec(config, wildcards.network),
        training=science(config.get("training", {})),
        data=science(
            {
                **config.get("training_data", {}),
                "resolution": config["stimuli"]["resolution"],
                "seed": seed("crops"),
            },
            drop=["path"],
        ),
    script:
        "../scripts/train_network.py"


rule import_network:
    input:
        unpack(user_model_inputs),
    output:
        artifact("network"),
    log:
        log_file("import_network/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.imported),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    params:
        network=lambda wildcards: user_model_settings(config, wildcards.network),
        seed=seed("network_init"),
    script:
        "../scripts/import_network.py"
