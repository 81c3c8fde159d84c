# The networks: trained by the workflow, converted from a downloaded checkpoint, or imported
# from the user's zoo entry or code (neuroattack.networks); and each one's features at its layer.


# The labelled images of training_data, cut once for every network the workflow trains.
rule training_data:
    input:
        unpack(training_inputs),
    output:
        artifact("training_data"),
    log:
        log_file("training_data"),
    priority: FIRST
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=10),
    params:
        data=science(
            {
                **config.get("training_data", {}),
                "resolution": config["stimuli"]["resolution"],
                "seed": seed("crops"),
            },
            drop=["path"],
        ),
    script:
        "../scripts/training_data.py"


rule train_network:
    input:
        training_data=artifact("training_data"),
    output:
        artifact("network"),
    log:
        log_file("train_network/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.trained),  # the brain's network too, where it has a seed
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


rule convert_checkpoint:
    input:
        downloaded(config, "checkpoints/{network}.ckpt"),
    output:
        artifact("network"),
    log:
        log_file("convert_checkpoint/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.downloaded),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    params:
        network=lambda wildcards: checkpoint_settings(config, wildcards.network),
    script:
        "../scripts/convert_checkpoint.py"


rule features:
    input:
        network=viewed_network,
        stimuli=artifact("stimuli"),
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
