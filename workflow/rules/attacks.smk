rule attack_image:
    input:
        unpack(
            lambda wildcards: {
                "stimuli": artifact("stimuli"),
                "site_models": round_site_models(1),
                "surrogate": round_surrogates(1),
                **{f"weights_{name}": path for name, path in network_weights().items()},
                **{f"features_{name}": path for name, path in unit_features().items()},
            }
        ),
    output:
        artifact("attack"),
    log:
        log_file("attacks/image{index}"),
    priority: CHAIN
    group:
        "attacks"
    conda:
        "../../envs/compute.yaml"
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=60, chunk_rows=config["attack"]["chunk_rows"]),
    params:
        attack=science(config["attack"], drop=["images", "layers"]),
        seeds=lambda wildcards: {
            "attacked_images": seed("attacked_images"),
            "units": seed("units"),
            "attack_starts": seed("attack_starts", 1, int(wildcards.index)),
            "model_baseline": seed("model_baseline", 1, int(wildcards.index)),
        },
    script:
        "../scripts/attack_image.py"
