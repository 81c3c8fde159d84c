rule train_network:
    output:
        result("networks/{network}.nc"),
    log:
        log_file("train_network/{network}"),
    wildcard_constraints:
        network=NETWORK_PATTERN + "|brain",
    threads: 2
    params:
        spec=lambda wildcards: network_spec(wildcards.network),
        training=config["training"],
        data={**config["training_data"], "resolution": config["stimuli"]["resolution"], "seed": config["seed"]},
    resources:
        **gpu_job(mem_mb=8000, runtime=120),
    script:
        "../scripts/train_network.py"
