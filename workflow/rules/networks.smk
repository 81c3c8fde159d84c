rule train_network:
    input:
        unpack(training_inputs),
    output:
        artifact("network"),
    log:
        log_file("train_network/{network}"),
    wildcard_constraints:
        network=name_pattern(RUN.trained + (("brain",) if RUN.simulated else ())),
    conda:
        "../../envs/compute.yaml"
    threads: 2
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
