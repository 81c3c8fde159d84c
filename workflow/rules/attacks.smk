rule attack_image:
    input:
        unpack(
            lambda wildcards: {
                "stimuli": result("stimuli/stimuli.nc"),
                "site_models": result("site_models/site_models.nc"),
                "surrogate": surrogate_weights(),
                **{f"weights_{name}": path for name, path in network_weights().items()},
                **{f"features_{name}": path for name, path in network_features().items()},
            }
        ),
    output:
        result("attacks/image{index}.nc"),
    log:
        log_file("attacks/image{index}"),
    group:
        "attacks"
    conda:
        "../../envs/compute.yaml"
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=60, chunk_rows=config["attack"]["chunk_rows"]),
    params:
        attack=science(config["attack"], drop=["images"]),
        seed=config["seed"],
    script:
        "../scripts/attack_image.py"
